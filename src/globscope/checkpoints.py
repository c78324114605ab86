"""Checkpoint sets: a folder of saved networks and the manifest that names them.

``manifest.json`` lists every checkpoint: its file (relative to the folder), run/variant,
epoch or step and task. Files are read without running pickled code: PyTorch files through
``torch.load(weights_only=True)`` with a few harmless types allowed besides tensors (see
``HARMLESS_GLOBALS``), ``.safetensors`` and ``.npz`` (``allow_pickle=False``).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from globscope.errors import GlobscopeError
from globscope.fileio import hash_json, write_json
from globscope.layout import ParameterLayout
from globscope.tasks import get_task

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "globscope-checkpoint-set"
TORCH_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin"}
SUFFIXES = TORCH_SUFFIXES | {".safetensors", ".npz"}
_FORMATS = {".safetensors": "safetensors", ".npz": "NumPy .npz"}  # the others: PyTorch
# Keys under which training code nests the model's state dict (Lightning: "state_dict").
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
# Names of buffers when no model is at hand to tell them apart from parameters.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
# Unusable files named in one error; reading stops there (a wrong task would fail every file).
MAX_REPORTED = 10


def _harmless_globals() -> list:
    """Types besides tensors that training code stores in checkpoints (Lightning's
    ``hyper_parameters``: numpy scalars, arrays and dtypes, ``pathlib`` paths, ``argparse``
    namespaces) and that only build values when unpickled, under the names pickles of numpy 1 and 2
    and Python 3.11 to 3.13 give them.
    """
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    scalar_types = set(np.sctypeDict.values())
    found = [*scalar_types, *{type(np.dtype(t)) for t in scalar_types}, np.dtype, np.ndarray, argparse.Namespace]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    # a concrete path of the other system cannot be made here: it is read as the pure path it names
    posix = pathlib.PosixPath if os.name != "nt" else pathlib.PurePosixPath
    windows = pathlib.WindowsPath if os.name == "nt" else pathlib.PureWindowsPath
    paths = {"PurePath": pathlib.PurePath, "PurePosixPath": pathlib.PurePosixPath,
             "PureWindowsPath": pathlib.PureWindowsPath, "PosixPath": posix, "WindowsPath": windows}
    for module in ("pathlib", "pathlib._local"):
        found += [(cls, f"{module}.{name}") for name, cls in paths.items()]
    return found


HARMLESS_GLOBALS = _harmless_globals()


def read_file(path) -> dict:
    """Every tensor in a checkpoint file, without running pickled code.

    PyTorch files are read with ``torch.load(weights_only=True)``, allowing besides tensors only
    ``HARMLESS_GLOBALS``; a file holding anything else is refused, naming what it holds.

    Returns
    -------
    dict
        The file's top-level object (a state dict, or a dict that holds one).

    Raises
    ------
    GlobscopeError
        Naming the file: missing, refused (and why), or truncated / not of its format.
    """
    path = Path(path)
    if not path.is_file():
        raise GlobscopeError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k].copy()) for k in z.files}
        return _torch_load(path)
    except GlobscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a corrupt file raises (EOFError, OSError, ...)
        if suffix == ".npz" and isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise GlobscopeError(f"{path}: refused to load: it holds object arrays (pickled Python objects), "
                                 "which could run code; save numeric arrays only") from None
        raise _not_a_checkpoint(path) from e


def _torch_load(path: Path):
    """``torch.load(weights_only=True)`` allowing ``HARMLESS_GLOBALS``; refusals named in a
    GlobscopeError, a corrupt pickle re-raised."""
    # the context's exit removes its globals even where the caller had allowed them too
    allowed = set(torch.serialization.get_safe_globals())
    with torch.serialization.safe_globals([g for g in HARMLESS_GLOBALS if g not in allowed]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            refused = _refusal(path, e)
            if refused is None:
                raise
            raise GlobscopeError(
                f"{path}: refused to load: it holds {refused}, which could run code when unpickled (only tensors "
                "and plain values are read: numbers, strings, containers, numpy values, paths); if you trust the "
                "file, save its state dict alone (torch.save(model.state_dict(), ...)) or as .safetensors") from None


def _not_a_checkpoint(path: Path) -> GlobscopeError:
    # torch's own words for these ("[Errno 22] Invalid argument", an empty EOFError) tell a user
    # nothing; the cause stays chained for -v
    kind = _FORMATS.get(path.suffix.lower(), "PyTorch")
    return GlobscopeError(f"{path}: unreadable checkpoint: truncated or not a {kind} file "
                          f"({path.stat().st_size} bytes); copy it again or remove it from the set")


def _refusal(path: Path, error: pickle.UnpicklingError) -> str | None:
    """What a refused PyTorch file holds: the globals not allowed, else torch's reason; None when
    the pickle itself is corrupt (an unknown opcode: not a PyTorch file)."""
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - a legacy (non-zip) file: the refused global is in torch's message
        names = sorted(set(re.findall(r"GLOBAL (\S+)", str(error))))
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return "pickled " + ", ".join(names[:3]) + more
    # torch's reason follows "WeightsUnpickler error:" in a message wrapped in advice and ANSI codes
    reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).partition("WeightsUnpickler error:")[2].strip()
    reason = reason.splitlines()[0] if reason else ""
    if not reason or reason.startswith("Unsupported operand"):
        return None
    return f"objects torch refuses ({reason})"


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj, prefix: str | None = None, source: str = "checkpoint") -> dict:
    """The model's state dict inside a loaded checkpoint.

    Accepts a bare state dict or a dict holding one under ``state_dict``, ``model_state_dict``
    or ``model`` (optimizer state and other entries are ignored). With ``prefix`` (Lightning's
    ``model.``), keys with it are kept without it and other keys dropped; without, a prefix
    ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) shared by every key is removed.
    """
    state = None
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
        else:
            state = obj
    if not isinstance(state, dict):
        raise GlobscopeError(f"{source}: holds no state dict (found {type(obj).__name__})")
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise GlobscopeError(f"{source}: no key starts with prefix {prefix!r}")
    else:
        for auto in ("module.", "_orig_mod."):
            if state and all(k.startswith(auto) for k in state):
                state = {k[len(auto):]: v for k, v in state.items()}
    if not state:
        raise GlobscopeError(f"{source}: holds no tensors")
    return state


@dataclass
class Checkpoint:
    """One manifest entry."""

    file: str
    run: str
    epoch: int | None = None
    step: int | None = None
    task: str | None = None
    variant: str | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def position(self) -> int:
        """How far training had got: the epoch, else the step (0 when neither is known)."""
        return self.epoch if self.epoch is not None else (self.step or 0)

    def to_dict(self) -> dict:
        d = {"file": self.file, "run": self.run, "variant": self.variant or self.run,
             "epoch": self.epoch, "step": self.step, "task": self.task}
        if self.metrics:
            d["metrics"] = self.metrics
        return d


class CheckpointSet:
    """A folder of checkpoints described by ``manifest.json``.

    Parameters
    ----------
    root : path
        The folder.
    checkpoints : list of Checkpoint
    task : str, optional
        Default task of entries that name none.
    prefix : str, optional
        Key prefix to strip from every state dict (see ``extract_state_dict``).
    meta : dict
        Anything else the manifest holds (e.g. the variants' hyper-parameters).
    """

    def __init__(self, root, checkpoints, task=None, prefix=None, meta=None):
        self.root = Path(root)
        self.checkpoints = list(checkpoints)
        self.task = task
        self.prefix = prefix
        self.meta = dict(meta or {})
        if not self.checkpoints:
            raise GlobscopeError(f"{self.root}: empty checkpoint set (no checkpoints listed)")

    def __len__(self) -> int:
        return len(self.checkpoints)

    @classmethod
    def open(cls, root, prefix: str | None = None) -> CheckpointSet:
        """Read ``root/manifest.json`` (``root`` may also be the manifest itself)."""
        root = Path(root)
        if root.is_file() and root.name == MANIFEST:
            root = root.parent
        path = root / MANIFEST
        if not root.is_dir():
            raise GlobscopeError(f"{root}: checkpoint set folder not found")
        if not path.is_file():
            raise GlobscopeError(
                f"{root}: no {MANIFEST}; index the folder first with `globscope index {root}`")
        import json

        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise GlobscopeError(f"{path}: unreadable manifest ({e})") from None
        if not isinstance(m, dict):
            raise GlobscopeError(f"{path}: manifest must be a JSON object, not {type(m).__name__}")
        entries = m.get("checkpoints")
        if not isinstance(entries, list):
            raise GlobscopeError(f"{path}: manifest has no 'checkpoints' list")
        cks = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise GlobscopeError(f"{path}: checkpoint entry {i} has no 'file' string")
            run = e.get("run") or e.get("variant")
            if run is None:
                raise GlobscopeError(f"{path}: checkpoint entry {i} ({e['file']}) has no 'run' or 'variant'")
            for key in ("epoch", "step"):
                if e.get(key) is not None and (not isinstance(e[key], int) or isinstance(e[key], bool)):
                    raise GlobscopeError(f"{path}: checkpoint entry {i} ({e['file']}): '{key}' must be an "
                                         f"integer, not {e[key]!r}")
            cks.append(Checkpoint(file=e["file"], run=str(run), epoch=e.get("epoch"), step=e.get("step"),
                                  task=e.get("task"), variant=e.get("variant"),
                                  metrics=e.get("metrics") or {}))
        meta = {k: v for k, v in m.items() if k not in ("checkpoints", "task", "prefix")}
        return cls(root, cks, task=m.get("task"), prefix=prefix or m.get("prefix"), meta=meta)

    def save(self) -> Path:
        """Write ``manifest.json`` atomically."""
        m = {"format": FORMAT, "version": 1, **self.meta, "task": self.task}
        if self.prefix:
            m["prefix"] = self.prefix
        m["checkpoints"] = [c.to_dict() for c in self.checkpoints]
        write_json(self.root / MANIFEST, m)
        return self.root / MANIFEST

    # -- reading -------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return sorted({c.task or self.task for c in self.checkpoints if (c.task or self.task)})

    @property
    def runs(self) -> list[str]:
        """Run names in order of first appearance."""
        return list(dict.fromkeys(c.run for c in self.checkpoints))

    def run_indices(self, run: str) -> list[int]:
        """Indices of ``run``'s checkpoints in training order (epoch, then step)."""
        cks = self.checkpoints
        return sorted((i for i, c in enumerate(cks) if c.run == run), key=lambda i: (cks[i].position, cks[i].step or 0))

    def path(self, i: int) -> Path:
        return self.root / self.checkpoints[i].file

    def state_dict(self, i: int) -> dict:
        """State dict of checkpoint ``i`` (parameters and buffers)."""
        p = self.path(i)
        return extract_state_dict(read_file(p), self.prefix, source=str(p))

    def layout(self, module: torch.nn.Module | None = None) -> ParameterLayout:
        """The set's layout: the module's if given, else inferred from the first readable checkpoint
        (the unreadable ones before it are reported by ``load_weights``; all of them here when none reads).
        """
        if module is not None:
            return ParameterLayout.from_module(module)
        errors = []
        for i in range(len(self)):
            try:
                state = self.state_dict(i)
            except GlobscopeError as e:
                errors.append(e)
                if len(errors) == MAX_REPORTED:
                    break
                continue
            return ParameterLayout.from_state_dict(
                state, [k for k in state if k.rsplit(".", 1)[-1] in BUFFER_SUFFIXES])
        raise self._unusable(errors, checked=len(errors))

    def _unusable(self, errors: list, checked: int) -> GlobscopeError:
        """One error naming every unusable file found among the first ``checked`` checkpoints."""
        if len(errors) == 1:
            return errors[0]
        rest = f" (the first {len(errors)} found; {len(self) - checked} not checked)" if checked < len(self) else ""
        return GlobscopeError(f"{self.root}: {len(errors)} of {len(self)} checkpoints are unusable{rest}:\n  "
                              + "\n  ".join(str(e) for e in errors))

    def fingerprint(self) -> str:
        """Hash of the manifest and every file's size and mtime (cheap cache key)."""
        stats = []
        for c in self.checkpoints:
            p = self.root / c.file
            st = p.stat() if p.exists() else None
            stats.append([c.file, st.st_size if st else None, st.st_mtime_ns if st else None])
        return hash_json([c.to_dict() for c in self.checkpoints] + stats)

    def load_weights(self, layout: ParameterLayout | None = None, out=None,
                     progress: Callable[[float], None] | None = None):
        """Stream every checkpoint into one matrix.

        Parameters
        ----------
        layout : ParameterLayout, optional
            Defaults to ``self.layout()``; every checkpoint must fit it (parameters and buffers).
        out : path, optional
            Memory-map W there (``.npy``) instead of holding it in RAM: large sets are
            written row by row and never held twice.
        progress : callable(float), optional
            Called with the fraction done.

        Returns
        -------
        W : ndarray of shape (N, D), float32
        buffers : list of dict
            Per checkpoint, its buffers (e.g. BatchNorm statistics) as float tensors.

        Raises
        ------
        GlobscopeError
            Naming every file that cannot be read or does not fit, up to ``MAX_REPORTED`` of them.
        """
        layout = layout or self.layout()
        shape = (len(self), layout.n_params)
        if out is not None:
            W = np.lib.format.open_memmap(str(out), mode="w+", dtype=np.float32, shape=shape)
        else:
            W = np.empty(shape, dtype=np.float32)
        buffers, errors = [], []
        for i in range(len(self)):
            try:
                state = self.state_dict(i)
                layout.flatten(state, out=W[i], source=str(self.path(i)))
            except GlobscopeError as e:  # read on: one run names every bad file, not only the first
                errors.append(e)
                if len(errors) == MAX_REPORTED:
                    break
            else:
                buffers.append({k: state[k] for k in layout.buffers if k in state})
            if progress:
                progress((i + 1) / len(self))
        if errors:
            raise self._unusable(errors, checked=i + 1)
        if out is not None:
            W.flush()
        return W, buffers


_NUMBERED = re.compile(r"^(?P<kind>epoch|step|ep|iter|it)[_-]?(?P<n>\d+)$", re.IGNORECASE)
# Lightning's ModelCheckpoint names: "epoch=2-step=135", "epoch=02-val_loss=0.31-v1" (KEY=VALUE parts)
_KEY_VALUE = re.compile(r"(?:^|-)([A-Za-z_][\w.]*)=([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?=-|$)")
# Folders of Lightning's tree save_dir/lightning_logs/version_N/checkpoints/ that do not tell runs apart
_NOT_RUN_NAMES = {"lightning_logs", "checkpoints"}


def _named_position(stem: str) -> tuple[int | None, int | None, dict] | None:
    """(epoch, step, metrics) a file's name states (``epoch_K``, ``step_K``, Lightning's
    ``epoch=K-step=S-val_loss=X``), or None when it states neither epoch nor step."""
    m = _NUMBERED.match(stem)
    if m:
        n = int(m["n"])
        return (None, n, {}) if m["kind"].lower() in ("step", "iter", "it") else (n, None, {})
    pairs = dict(_KEY_VALUE.findall(stem))
    epoch, step = (int(v) if v is not None and v.isdigit() else None
                   for v in (pairs.pop("epoch", None), pairs.pop("step", None)))
    if epoch is None and step is None:
        return None
    return epoch, step, {k: float(v) for k, v in pairs.items()}


def _recorded_position(path: Path) -> tuple[int | None, int | None] | None:
    """(epoch, step) a training checkpoint records (Lightning's ``epoch`` and ``global_step``), or
    None when it records neither."""
    obj = read_file(path)
    if not isinstance(obj, dict):
        return None
    epoch, step = (v if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None
                   for v in (obj.get("epoch"), obj.get("global_step", obj.get("step"))))
    if epoch is None and step is None:
        return None
    return (None if epoch is None else int(epoch)), (None if step is None else int(step))


def _same_point(a: Checkpoint, b: Checkpoint) -> bool:
    """Whether two checkpoints of a run were saved at the same point (every number both know agrees)."""
    known = [(x, y) for x, y in ((a.epoch, b.epoch), (a.step, b.step)) if x is not None and y is not None]
    return bool(known) and all(x == y for x, y in known)


def _natural(text: str) -> list:
    """Sort key that puts version_2 before version_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def index_folder(root, task: str | None = None, prefix: str | None = None, *,
                 variants: dict[str, str] | None = None, save: bool = True) -> CheckpointSet:
    """Index a folder of checkpoints into a manifest.

    A checkpoint's epoch and step come from its name: ``epoch_K`` or ``step_K`` (also ``ep``,
    ``iter``, ``it``; ``_``, ``-`` or nothing between), or PyTorch Lightning's ``epoch=K-step=S``,
    whose other ``KEY=NUMBER`` parts (``val_loss=0.31``) are kept as the checkpoint's metrics. A
    PyTorch file whose name states neither (Lightning's ``last.ckpt``, ``{epoch}-{step}`` without
    metric names) is read for the ``epoch`` and ``global_step`` it records, and left out when a file
    of its run named with the same epoch and step exists: Lightning writes ``last.ckpt`` as a copy of
    the latest checkpoint. Other files are skipped with a warning.

    A checkpoint's run is its folder below ``root``, without Lightning's ``lightning_logs`` and
    ``checkpoints`` folders: ``A/epoch_3.pt`` is run ``A``, ``lightning_logs/version_0/checkpoints/
    epoch=2-step=135.ckpt`` run ``version_0``, a logger's ``NAME/VERSION/checkpoints/…`` run
    ``NAME/VERSION``; files directly in ``root`` are run ``run``. Runs are ordered naturally
    (``version_2`` before ``version_10``), each run's checkpoints by epoch, then step.

    Parameters
    ----------
    root : path
        The folder.
    task : str, optional
        Task of every checkpoint (built-in or ``package.module:callable``); checked here, so that a
        misspelt task fails now rather than at the first fit.
    prefix : str, optional
        Key prefix to strip from every state dict (see ``extract_state_dict``).
    variants : dict of str to str, optional
        Variant name of a run (``{"version_0": "lr=0.1"}``); a run not named is its own variant.
    save : bool
        Write ``root/manifest.json``; without, the set lives in memory only (read-only data folders).

    Returns
    -------
    CheckpointSet
    """
    root = Path(root)
    if not root.is_dir():
        raise GlobscopeError(f"{root}: not a folder")
    if task:
        get_task(task)
    named, recorded = [], []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in SUFFIXES:
            continue
        rel = p.relative_to(root)
        run = "/".join(part for part in rel.parent.parts if part not in _NOT_RUN_NAMES) or "run"
        position = _named_position(p.stem)
        if position is not None:
            epoch, step, metrics = position
            named.append(Checkpoint(rel.as_posix(), run, epoch, step, task, metrics=metrics))
            continue
        if p.suffix.lower() not in TORCH_SUFFIXES:
            log.warning("%s: skipped (its name states no epoch or step)", p)
            continue
        try:
            position = _recorded_position(p)
        except GlobscopeError as e:
            log.warning("%s: skipped (its name states no epoch or step, and it cannot be read: %s)", p, e)
            continue
        if position is None:
            log.warning("%s: skipped (neither its name nor its content states an epoch or step)", p)
            continue
        recorded.append(Checkpoint(rel.as_posix(), run, *position, task))
    cks = list(named)
    for c in recorded:
        twin = next((n for n in named if n.run == c.run and _same_point(n, c)), None)
        if twin is None:
            cks.append(c)
        else:
            log.info("%s: skipped (a copy of %s, saved at the same epoch and step)", root / c.file, twin.file)
    if not cks:
        raise GlobscopeError(f"{root}: no checkpoint files named like VARIANT/epoch_K.pt or Lightning's "
                             f"epoch=K-step=S.ckpt ({', '.join(sorted(SUFFIXES))})")
    runs = {c.run for c in cks}
    unknown = sorted(set(variants or {}) - runs)
    if unknown:
        raise GlobscopeError(f"{root}: no run {unknown[0]!r} to name a variant of; the runs are "
                             f"{', '.join(sorted(runs, key=_natural))}")
    for c in cks:
        c.variant = (variants or {}).get(c.run, c.run)
    cks.sort(key=lambda c: (_natural(c.run), c.position, c.step or 0, c.file))
    cs = CheckpointSet(root, cks, task=task, prefix=prefix)
    if save:
        cs.save()
    return cs
