"""The chunk store: finished chunks of a field, on disk, keyed by a hash of everything that shapes them.

A run that is interrupted (Ctrl-C, a crash, ``kill -9``) leaves its finished chunks behind; the
next run with the same key loads them instead of computing them again. Every chunk file is written
atomically, so a chunk is either complete on disk or absent.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path, read_json, write_json
from globscope.names import ACCURACY, DISTANCE, LOSS

log = logging.getLogger(__name__)

# the chunk stores' folder in a landscape's output folder: <out>/.landscape-cache/<key>/
CACHE_DIR = ".landscape-cache"
# what a chunk holds (log_loss is derived from loss when the field is assembled)
FIELDS = (LOSS, ACCURACY, DISTANCE)


def chunk_span(i: int, n_points: int, chunk_points: int) -> tuple[int, int]:
    """Point ids ``start, stop`` of chunk ``i`` of a grid of ``n_points`` cut into chunks of
    ``chunk_points`` (the last one shorter)."""
    return i * chunk_points, min((i + 1) * chunk_points, n_points)


def n_chunks(n_points: int, chunk_points: int) -> int:
    return -(-n_points // chunk_points)


def stored_chunks(folder) -> set[int]:
    """Indices of the chunk files in a store's folder, from one listing of it (a huge store has
    millions of chunks: one ``stat`` each would take minutes)."""
    try:
        names = [e.name for e in os.scandir(folder)]
    except FileNotFoundError:
        return set()
    return {int(n[6:-4]) for n in names if n.startswith("chunk_") and n.endswith(".npz") and n[6:-4].isdigit()}


class ChunkStore:
    """Chunks ``0 … n_chunks-1`` of ``chunk_points`` grid points each (the last may be shorter).

    Parameters
    ----------
    folder : path
        The store's folder, ``<out>/.landscape-cache/<key>``; created on first write.
    key : str
        Hash of the manifold, task, grid and settings (see ``compute_landscape``).
    n_points : int
        Grid points in all.
    chunk_points : int
        Points per chunk.
    settings : dict
        Written beside the chunks (``store.json``) so a user can tell caches apart.
    """

    def __init__(self, folder, key: str, n_points: int, chunk_points: int, settings: dict | None = None):
        if chunk_points < 1:
            raise GlobscopeError(f"chunk size must be at least 1 point, got {chunk_points}")
        self.folder = Path(folder)
        self.key = key
        self.n_points = int(n_points)
        self.chunk_points = int(chunk_points)
        self.n_chunks = n_chunks(self.n_points, self.chunk_points)
        self.settings = settings or {}
        info = read_json(self.folder / "store.json")
        if info is not None and info.get("key") != key:
            raise GlobscopeError(f"{self.folder}: chunk store of another run (key {info.get('key')}, expected {key})")

    def span(self, i: int) -> tuple[int, int]:
        """Point ids ``start, stop`` of chunk ``i``."""
        return chunk_span(i, self.n_points, self.chunk_points)

    def path(self, i: int) -> Path:
        return self.folder / f"chunk_{i:06d}.npz"

    def has(self, i: int) -> bool:
        return self.path(i).is_file()

    def done(self) -> list[int]:
        """Indices of the chunks on disk, ascending."""
        return sorted(i for i in stored_chunks(self.folder) if i < self.n_chunks)

    def save(self, i: int, arrays: dict[str, np.ndarray]) -> None:
        """Write chunk ``i`` atomically: ``arrays`` of shape (stop - start,) by field name."""
        start, stop = self.span(i)
        for k, v in arrays.items():
            if np.shape(v) != (stop - start,):
                raise GlobscopeError(f"chunk {i}: field {k!r} has shape {np.shape(v)}, expected ({stop - start},)")
        if not (self.folder / "store.json").is_file():
            write_json(self.folder / "store.json", {"key": self.key, "n_points": self.n_points,
                                                    "chunk_points": self.chunk_points, **self.settings})
        with atomic_path(self.path(i)) as tmp:
            np.savez(tmp, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})

    def load(self, i: int) -> dict[str, np.ndarray]:
        """Chunk ``i``'s arrays; a damaged file is reported (and may be deleted to recompute it)."""
        p = self.path(i)
        start, stop = self.span(i)
        try:
            with np.load(p, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise GlobscopeError(f"{p}: damaged chunk file ({e}); delete it to recompute the chunk") from None
        if any(v.shape != (stop - start,) for v in out.values()):
            raise GlobscopeError(f"{p}: chunk file does not fit the grid; delete it to recompute the chunk")
        return out


__all__ = ["ChunkStore", "CACHE_DIR", "FIELDS", "chunk_span", "n_chunks", "stored_chunks"]
