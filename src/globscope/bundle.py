"""The bundle: one self-describing output folder, its ``manifest.json`` and cached stages.

Each stage records a key (hash of its settings and its inputs' hashes) and its outputs; a
stage whose key matches and whose outputs exist is reused instead of recomputed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from globscope import __version__
from globscope.checkpoints import CheckpointSet
from globscope.fileio import hash_json, write_json
from globscope.vtkxml import write_poly_data

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class Bundle:
    """An output folder with a manifest of settings, input hashes and finished stages."""

    def __init__(self, root, record: str = "manifest.json"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / record  # another name where the folder's manifest.json is a checkpoint set's
        try:
            self.manifest = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.manifest = {}
        self.manifest.update({"format": "globscope-bundle", "format_version": FORMAT_VERSION,
                              "globscope_version": __version__})
        self.manifest.setdefault("stages", {})

    def save(self) -> None:
        write_json(self.path, self.manifest)

    def stage(self, name: str, key: dict, outputs: list[str], run: Callable[[], dict | None]) -> dict:
        """Run ``run`` unless stage ``name`` already ran with ``key`` and its outputs exist.

        ``run`` writes ``outputs`` (paths relative to the bundle) and may return a dict of
        results, stored in the manifest and returned on reuse.
        """
        h = hash_json(key)
        done = self.manifest["stages"].get(name)
        if done and done.get("key") == h and all((self.root / o).exists() for o in outputs):
            log.info("stage %s: reusing cached result", name)
            done["reused"] = True
            self.save()  # the record tells what the last run did
            return done.get("result") or {}
        t0 = time.perf_counter()
        result = run() or {}
        self.manifest["stages"][name] = {"key": h, "settings": key, "outputs": outputs,
                                         "seconds": round(time.perf_counter() - t0, 2),
                                         "result": result, "reused": False}
        self.save()
        return result


def model_point_arrays(cs: CheckpointSet, Z: np.ndarray, errors: np.ndarray) -> tuple[dict, list]:
    """Point arrays and polylines of the encoded models of ``cs``.

    Parameters
    ----------
    Z : array of shape (N, d)
        Latent points of the checkpoints, in manifest order.
    errors : array of shape (N,)
        Reconstruction error of each model.

    Returns
    -------
    arrays : dict
        ``variant`` (name), ``variant_id``, ``epoch``, ``reconstruction_error``, every metric the
        manifest records (``eval_loss``, ``eval_accuracy``, ``train_loss``) and, for d = 4, ``w``
        (the fourth latent coordinate).
    lines : list of int arrays
        One polyline per run (of at least two checkpoints), in training order.
    """
    Z = np.asarray(Z, dtype=np.float64)
    runs, cks = cs.runs, cs.checkpoints
    arrays = {
        "variant": np.array([c.variant or c.run for c in cks], dtype=object),
        "variant_id": np.array([runs.index(c.run) for c in cks], dtype=np.int32),
        "epoch": np.array([c.position for c in cks], np.int64),
        "reconstruction_error": np.asarray(errors, dtype=np.float64),
    }
    for m in sorted({k for c in cks for k in c.metrics}):
        arrays[m] = np.array([c.metrics.get(m, np.nan) for c in cks], dtype=np.float64)
    if Z.shape[1] == 4:
        arrays["w"] = Z[:, 3]
    lines = [np.array(idx) for idx in map(cs.run_indices, runs) if len(idx) > 1]
    return arrays, lines


def write_model_points(path, Z: np.ndarray, cs: CheckpointSet, errors: np.ndarray) -> None:
    """Write the encoded models as a .vtp: one point per model (arrays of
    :func:`model_point_arrays`), one polyline per run, the run names as field data ``runs``."""
    arrays, lines = model_point_arrays(cs, Z, errors)
    write_poly_data(path, np.asarray(Z, dtype=np.float64)[:, :3], arrays, lines=lines,
                    field_data={"runs": np.array(cs.runs, dtype=object)})


__all__ = ["Bundle", "model_point_arrays", "write_model_points"]
