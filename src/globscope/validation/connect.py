"""Mode connectivity, projected: curves of low loss between trained models, measured for real and
read off each manifold's landscape (Garipov et al. 2018; the Globscope paper's fidelity check).

For each pair of final checkpoints (a hub variant and each other one, or given pairs) a curve is
trained (:mod:`globscope.validation.curves`), the real loss is evaluated at ``points`` values of t
along it and along the straight line between the same ends, and every curve point is encoded by
each manifold and the landscape's loss read at its projection (multilinear interpolation of that
manifold's field). The agreement of the two is the landscape's fidelity along the curve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from globscope import names as N
from globscope.checkpoints import CheckpointSet
from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path, hash_file, write_csv, write_json
from globscope.settings import ConnectSettings

log = logging.getLogger(__name__)


@dataclass
class Landscape:
    """A manifold and the loss field over its latent grid (what a projection is read from)."""

    name: str
    manifold: object
    grid: object  # globscope.grid.Grid
    loss: np.ndarray  # F[i, j(, k, l)]

    def at(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent points (M, d) of weights W (M, D), and the field's loss there (NaN outside the grid)."""
        Z = self.manifold.transform(W)
        return Z, self.grid.interpolate(self.loss, Z, outside="nan")


def read_landscape(name: str, manifold, field_file) -> Landscape:
    """The loss field a landscape stage wrote (``landscape.vti``, or ``landscape.npz`` for d = 4)."""
    from globscope.topology.export import read_grid_field

    f = read_grid_field(field_file, N.LOSS)
    if f.grid.dim != manifold.dim:
        raise GlobscopeError(f"{field_file}: a {f.grid.dim}-D field for a {manifold.dim}-D manifold ({name})")
    return Landscape(name, manifold, f.grid, f.values)


def landscape_names(manifold_paths) -> list[str]:
    """What the tables call each manifold: its method, or its file's stem where two share a method."""
    from globscope.manifolds import read_manifold_info

    paths = [Path(p) for p in manifold_paths]
    methods = [read_manifold_info(p).method for p in paths]
    for names in (methods, [p.stem for p in paths]):
        if len(set(names)) == len(names):
            return names
    raise GlobscopeError(f"manifolds {', '.join(map(str, paths))}: two share a method and a file name; "
                         "rename one so the tables can tell them apart")


def landscapes(manifold_paths, models, fields, settings, progress_factory=None) -> list[Landscape]:
    """Each manifold file's landscape, named by :func:`landscape_names`: the one beside it (a
    ``landscape.json`` that names this file, as a bundle has) or, when it has none, the one
    computed into ``fields/<name>/`` with ``settings`` (a ``LandscapeSettings``; finished chunks
    there are reused).

    Parameters
    ----------
    manifold_paths : list of path
    models : globscope.stages.Models
        The models whose task evaluates the fields (and whose box their grids span).
    progress_factory : callable(description) -> progress(fraction), optional
    """
    from globscope.fileio import read_json
    from globscope.manifolds import load_manifold
    from globscope.stages import landscape_of

    bar = progress_factory or (lambda desc: None)
    out = []
    for name, path in zip(landscape_names(manifold_paths), (Path(p).resolve() for p in manifold_paths)):
        man = load_manifold(path)
        digest = hash_file(path)
        beside = read_json(path.parent / "landscape.json", default={})
        if beside.get("manifold_id") == digest and beside.get("files"):  # this file's field, wherever it is
            field_file = path.parent / beside["files"][0]
        else:
            folder = Path(fields) / name
            s = landscape_of(man, models, folder, settings, manifold_path=path, manifold_id=digest,
                             progress=bar(f"{name} landscape"))
            field_file = folder / s["files"][0]
        out.append(read_landscape(name, man, field_file))
    return out


def parse_pairs(text: str | tuple, runs: list[str]) -> list[tuple[str, str]]:
    """``"G-A,G-B"`` (or a tuple of such strings) as run-name pairs, checked against ``runs``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    pairs = []
    for item in (s.strip() for s in items if s.strip()):
        a, sep, b = item.partition("-")
        if not sep or a not in runs or b not in runs or a == b:
            raise GlobscopeError(f"pair {item!r}: give two different runs as A-B (the runs are {', '.join(runs)})")
        pairs.append((a, b))
    return pairs


def choose_pairs(cs: CheckpointSet, settings: ConnectSettings) -> list[tuple[str, str]]:
    """The settings' pairs, else the hub (default: the last run) with every other run."""
    runs = cs.runs
    if settings.pairs:
        return parse_pairs(settings.pairs, runs)
    hub = settings.hub or runs[-1]
    if hub not in runs:
        raise GlobscopeError(f"hub {hub!r} is not a run of {cs.root} (the runs are {', '.join(runs)})")
    return [(hub, r) for r in runs if r != hub]


@dataclass
class PairResult:
    """One pair's curve and its measures (see :func:`connect` for the keys of ``row``)."""

    name: str
    curve: object  # curves.Curve
    t: np.ndarray
    real_loss: np.ndarray
    line_loss: np.ndarray
    projections: dict = field(default_factory=dict)  # manifold -> {"latent", "landscape_loss"}


def _errors(real: np.ndarray, predicted: np.ndarray) -> dict:
    d = np.abs(predicted - real)
    fin = np.isfinite(d)
    stat = (lambda f: float(f(d[fin])) if fin.any() else None)  # noqa: E731
    return {"mae": stat(np.mean), "median_abs_error": stat(np.median), "max_abs_error": stat(np.max),
            "n_outside": int((~fin).sum())}


def _range(v: np.ndarray) -> list:
    fin = v[np.isfinite(v)]
    return [float(fin.min()), float(fin.max())] if fin.size else [None, None]


def connect(models, landscapes: list[Landscape], out, settings: ConnectSettings = ConnectSettings(),
            progress=None) -> dict:
    """Train, evaluate and project the curves between pairs of final checkpoints.

    Parameters
    ----------
    models : globscope.stages.Models
        The checkpoint set under its task (the curves' ends are its runs' last checkpoints).
    landscapes : list of Landscape
        The manifolds to project onto, with their fields.
    out : path
        ``validation/``: ``connectivity.json``/``.csv``, ``curves.safetensors``, ``curves.vtp`` and
        the plots.
    settings : ConnectSettings

    Returns
    -------
    dict
        ``pairs``: per pair ``t``, ``real_loss``, ``line_loss``, ``curve_barrier``, ``line_barrier``
        and per manifold ``latent`` (T, d), ``landscape_loss`` (T,), the curve's and the projection's
        loss ranges and the errors (``mae``, ``median_abs_error``, ``max_abs_error``, ``n_outside``);
        ``rows``: the table (one row per pair and manifold); ``files``: what was written into ``out``.
    """
    from globscope.landscape import BatchedEvaluator
    from globscope.validation import curves as C

    task = models.require_task("connect")
    cs = models.cs
    pairs = choose_pairs(cs, settings)
    final = {r: cs.run_indices(r)[-1] for r in cs.runs}
    ev = BatchedEvaluator(task)  # the real loss, BatchNorm statistics recomputed at each point
    results = []
    for k, (a, b) in enumerate(pairs):
        w0, w1 = (torch.from_numpy(np.array(models.W[final[r]])) for r in (a, b))
        frac = (lambda f, k=k: progress((k + f) / len(pairs))) if progress else None  # noqa: E731
        curve = C.train_curve(task, w0, w1, kind=settings.curve, steps=settings.steps, lr=settings.lr,
                              seed=settings.seed, progress=frac)
        along = C.evaluate_along(ev, curve, settings.points)
        line = C.evaluate_along(ev, C.line(w0, w1), settings.points)
        res = PairResult(f"{a}-{b}", curve, along["t"], along["loss"], line["loss"])
        with torch.no_grad():
            W = curve.points(along["t"]).numpy()  # the very points whose real loss was taken
        for land in landscapes:
            Z, pred = land.at(W)
            res.projections[land.name] = {"latent": Z, "landscape_loss": pred}
        results.append(res)
    report = _report(results, settings)
    return {**report, "files": write_outputs(Path(out), results, report)}


def _report(results: list[PairResult], settings: ConnectSettings) -> dict:
    from globscope.validation.curves import barrier

    pairs, rows = {}, []
    for r in results:
        entry = {"t": r.t.tolist(), "real_loss": r.real_loss.tolist(), "line_loss": r.line_loss.tolist(),
                 "curve_barrier": barrier(r.t, r.real_loss), "line_barrier": barrier(r.t, r.line_loss),
                 "curve_loss_range": _range(r.real_loss), "manifolds": {}}
        for name, p in r.projections.items():
            m = {"latent": p["latent"].tolist(), "landscape_loss": p["landscape_loss"].tolist(),
                 "projection_loss_range": _range(p["landscape_loss"]), **_errors(r.real_loss, p["landscape_loss"])}
            entry["manifolds"][name] = m
            rows.append({"pair": r.name, "manifold": name, "curve_loss_min": entry["curve_loss_range"][0],
                         "curve_loss_max": entry["curve_loss_range"][1],
                         "projection_loss_min": m["projection_loss_range"][0],
                         "projection_loss_max": m["projection_loss_range"][1], "mae": m["mae"],
                         "median_abs_error": m["median_abs_error"], "max_abs_error": m["max_abs_error"],
                         "n_outside": m["n_outside"], "line_barrier": entry["line_barrier"],
                         "curve_barrier": entry["curve_barrier"]})
        pairs[r.name] = entry
    return {"settings": settings.to_dict(), "pairs": pairs, "rows": rows}


def write_outputs(out: Path, results: list[PairResult], report: dict) -> list[str]:
    """``connectivity.json``/``.csv``, ``curves.safetensors`` and ``curves.vtp`` into ``out``."""
    from safetensors.torch import save_file

    from globscope.vtkxml import write_poly_data

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "connectivity.json", report)
    write_csv(out / "connectivity.csv", report["rows"])
    # each curve as (3, D): start, control, end in the set's flat parameter order
    tensors = {r.name: torch.stack([r.curve.start, r.curve.control, r.curve.end]).contiguous() for r in results}
    with atomic_path(out / "curves.safetensors") as tmp:
        save_file(tensors, str(tmp))
    # one polyline per pair and manifold, in latent coordinates
    pts, arrays, lines, cell_pair, cell_manifold = [], {"t": [], "real_loss": [], "landscape_loss": [],
                                                        "abs_error": []}, [], [], []
    n = 0
    for r in results:
        for name, p in r.projections.items():
            Z = np.asarray(p["latent"], dtype=np.float64)
            pts.append(Z[:, :3])
            arrays["t"].append(r.t)
            arrays["real_loss"].append(r.real_loss)
            arrays["landscape_loss"].append(p["landscape_loss"])
            arrays["abs_error"].append(np.abs(p["landscape_loss"] - r.real_loss))
            lines.append(np.arange(n, n + len(Z)))
            cell_pair.append(r.name)
            cell_manifold.append(name)
            n += len(Z)
    if pts:
        write_poly_data(out / "curves.vtp", np.vstack(pts), {k: np.concatenate(v) for k, v in arrays.items()},
                        lines=lines, verts=False,
                        cell_data={"pair": np.array(cell_pair, dtype=object),
                                   "manifold": np.array(cell_manifold, dtype=object)})
    else:
        (out / "curves.vtp").unlink(missing_ok=True)  # no earlier run's curves beside this run's table
    return ["connectivity.json", "connectivity.csv", "curves.safetensors"] + (["curves.vtp"] if pts else [])


__all__ = ["Landscape", "read_landscape", "landscape_names", "landscapes", "parse_pairs", "choose_pairs", "connect",
           "write_outputs"]
