"""The bundle: one self-describing output folder, its ``manifest.json`` and cached stages.

Each stage records a key (hash of its settings and its inputs' hashes) and its outputs; a
stage whose key matches and whose outputs exist is reused instead of recomputed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from globscope import __version__
from globscope.checkpoints import CheckpointSet
from globscope.fileio import hash_json, write_json
from globscope.vtkxml import write_poly_data

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class Bundle:
    """An output folder with a manifest of settings, input hashes and finished stages."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "manifest.json"
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
            return done.get("result") or {}
        t0 = time.perf_counter()
        result = run() or {}
        self.manifest["stages"][name] = {"key": h, "settings": key, "outputs": outputs,
                                         "seconds": round(time.perf_counter() - t0, 2),
                                         "result": result, "reused": False}
        self.save()
        return result


def write_model_points(path, Z: np.ndarray, cs: CheckpointSet, errors: np.ndarray) -> None:
    """Write the encoded models as a .vtp: one point per model, one polyline per run.

    Point arrays: ``variant`` (name), ``variant_id``, ``epoch``, ``reconstruction_error`` and
    every metric the manifest records (``eval_loss``, ``eval_accuracy``, ``train_loss``).
    For d = 4 the fourth latent coordinate is the array ``w``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    runs = cs.runs
    variant = np.array([c.variant or c.run for c in cs.checkpoints], dtype=object)
    arrays = {
        "variant": variant,
        "variant_id": np.array([runs.index(c.run) for c in cs.checkpoints], dtype=np.int32),
        "epoch": np.array([c.epoch if c.epoch is not None else (c.step or 0) for c in cs.checkpoints], np.int64),
        "reconstruction_error": np.asarray(errors, dtype=np.float64),
    }
    metric_names = sorted({k for c in cs.checkpoints for k in c.metrics})
    for m in metric_names:
        arrays[m] = np.array([c.metrics.get(m, np.nan) for c in cs.checkpoints], dtype=np.float64)
    if Z.shape[1] == 4:
        arrays["w"] = Z[:, 3]
    lines = []
    for r in runs:
        idx = [i for i, c in enumerate(cs.checkpoints) if c.run == r]
        idx.sort(key=lambda i: (cs.checkpoints[i].epoch or 0, cs.checkpoints[i].step or 0))
        if len(idx) > 1:
            lines.append(np.array(idx))
    write_poly_data(path, Z[:, :3], arrays, lines=lines, field_data={"runs": np.array(runs, dtype=object)})


__all__ = ["Bundle", "write_model_points"]
