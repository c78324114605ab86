"""Saddle paths: are the landscape's low paths real low paths?

For each pair of basins the merge tree joins at a saddle (each persistent minimum and the older
minimum it merges into), the minimax path between the two minima on the grid graph
(:func:`globscope.topology.paths.minimax_path`: it passes the join saddle) is followed in latent
space, ``samples_per_edge`` points per grid edge. Along it three losses are compared:

``landscape``
    the field interpolated at the path's points: what the landscape predicts;
``decoded``
    the real loss of the decoder's weights at those latent points;
``weight_line``
    the real loss along the polygon in weight space through the decoded weights of the path's
    grid vertices (is the path low in weight space itself, not only on the manifold?).

Each gets Git Re-Basin's barrier (:func:`globscope.validation.curves.barrier`, t = the fraction of
the path's latent length).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from globscope import names as N
from globscope.fileio import write_json
from globscope.settings import PathSettings

log = logging.getLogger(__name__)


def basin_pairs(result, threshold: float) -> list[dict]:
    """The pairs of basins joined at a saddle: each finite persistence pair above ``threshold``.

    Returns
    -------
    list of dict
        ``minimum`` (vertex), ``saddle`` (vertex, the join saddle), ``elder`` (vertex: the older
        minimum the basin merges into), ``persistence``.
    """
    p = result.pairs
    keep = p.is_finite & (p.persistence > threshold)
    return [{"minimum": int(m), "saddle": int(s), "elder": int(e), "persistence": float(pers)}
            for m, s, e, pers in zip(p.birth_vertex[keep], p.death_vertex[keep], p.elder_vertex[keep],
                                     p.persistence[keep])]


def sample_path(grid, path: np.ndarray, samples_per_edge: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent points along a vertex path, ``samples_per_edge`` per edge (vertices included).

    Returns
    -------
    Z : ndarray of shape (M, d)
    t : ndarray of shape (M,)
        Fraction of the path's latent length at each point, 0 … 1.
    edge : ndarray of shape (M, 2)
        For each point, the edge (index into ``path``) it lies on and its fraction along it (the
        second column, 0 … 1), for the weight-space polygon.
    """
    V = grid.coordinates(path)
    n, k = len(path), samples_per_edge
    if n == 1:
        return V, np.zeros(1), np.zeros((1, 2))
    s = np.arange(k) / k
    Z = (V[:-1, None, :] + s[None, :, None] * (V[1:] - V[:-1])[:, None, :]).reshape(-1, V.shape[1])
    Z = np.vstack([Z, V[-1:]])
    edge = np.vstack([np.column_stack([np.repeat(np.arange(n - 1), k), np.tile(s, n - 1)]), [n - 2, 1.0]])
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(Z, axis=0), axis=1))])
    return Z, cum / cum[-1], edge


def saddle_paths(manifold, task, field, topology_result, threshold: float, out,
                 settings: PathSettings = PathSettings(), variants_of: dict | None = None,
                 curve_barriers: dict | None = None) -> dict:
    """Follow, decode and evaluate the minimax path between each pair of joined basins.

    Parameters
    ----------
    manifold : Manifold
        Decodes latent points into the task's weights.
    task : Task
    field : GridField
        The loss field (array ``loss`` on its grid); the path is found on its topology array.
    topology_result : TopologyResult
        Of the topology array of the same grid (``pairs`` of the input field).
    threshold : float
        The absolute simplification threshold: the pairs above it are the basins.
    out : path
        Folder of ``paths.json`` and ``paths.vtp``.
    variants_of : dict, optional
        minimum vertex -> runs whose final model lies in its basin (``final_model_basins``).
    curve_barriers : dict, optional
        "A-B" -> the trained curve's barrier; a path between basins holding A and B is compared
        with the lowest such curve.

    Returns
    -------
    dict
        ``settings`` and ``paths``: per pair of basins the vertices, ``t``, the three losses, their
        barriers, the errors of the landscape against the decoded loss and the matching curve's
        barrier when there is one; ``files``: what was written into ``out``.
    """
    from globscope.landscape import BatchedEvaluator
    from globscope.landscape.driver import make_decoder
    from globscope.topology.paths import minimax_path
    from globscope.validation.curves import barrier

    curve_barriers = curve_barriers or {}
    ev = BatchedEvaluator(task)
    decode = make_decoder(manifold, ev.device)
    grid, loss = field.grid, field.arrays[N.LOSS]
    paths = []
    for pair in basin_pairs(topology_result, threshold):
        path = minimax_path(field.values, pair["minimum"], pair["elder"])
        Z, t, edge = sample_path(grid, path, settings.samples_per_edge)
        predicted = grid.interpolate(loss, Z)
        W = decode(Z).float()
        decoded, _ = ev.evaluate(W)
        Wv = decode(grid.coordinates(path)).float()
        i, f = edge[:, 0].astype(int), torch.as_tensor(edge[:, 1:], dtype=torch.float32, device=Wv.device)
        Wl = Wv[i] + f * (Wv[np.minimum(i + 1, len(path) - 1)] - Wv[i])
        weight_line, _ = ev.evaluate(Wl)
        d = np.abs(predicted - decoded)
        entry = {**pair, "vertices": path.tolist(), "latent": Z.tolist(), "t": t.tolist(),
                 "landscape_loss": predicted.tolist(), "decoded_loss": decoded.tolist(),
                 "weight_line_loss": weight_line.tolist(),
                 "landscape_barrier": barrier(t, predicted), "decoded_barrier": barrier(t, decoded),
                 "weight_line_barrier": barrier(t, weight_line),
                 "mae": float(np.mean(d)), "max_abs_error": float(np.max(d))}
        runs_a, runs_b = ((variants_of or {}).get(pair[k], []) for k in ("minimum", "elder"))
        entry["runs"] = [runs_a, runs_b]
        # Of the curves between runs of the two basins, the lowest: the minimax path claims the
        # lowest way between them.
        curves = [(curve_barriers[name], name) for a in runs_a for b in runs_b
                  for name in (f"{a}-{b}", f"{b}-{a}") if name in curve_barriers]
        if curves:
            low, name = min(curves)
            entry["curve"] = {"pair": name, "curve_barrier": low}
        paths.append(entry)
    report = {"settings": settings.to_dict(), "threshold": threshold, "paths": paths}
    return {**report, "files": write_outputs(Path(out), report)}


def write_outputs(out: Path, report: dict) -> list[str]:
    """``paths.json`` and ``paths.vtp`` (one polyline per path, latent coordinates, point arrays
    ``t``, ``landscape_loss``, ``decoded_loss``, ``weight_line_loss``)."""
    from globscope.vtkxml import write_poly_data

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "paths.json", report)
    paths = report["paths"]
    if not paths:
        (out / "paths.vtp").unlink(missing_ok=True)  # no earlier run's paths beside this run's record
        return ["paths.json"]
    pts, lines, n = [], [], 0
    for p in paths:
        Z = np.asarray(p["latent"])
        pts.append(Z[:, :3])
        lines.append(np.arange(n, n + len(Z)))
        n += len(Z)
    arrays = {k: np.concatenate([p[k] for p in paths]) for k in ("t", "landscape_loss", "decoded_loss",
                                                                 "weight_line_loss")}
    write_poly_data(out / "paths.vtp", np.vstack(pts), arrays, lines=lines, verts=False,
                    cell_data={"saddle": np.array([p["saddle"] for p in paths], dtype=np.int64)})
    return ["paths.json", "paths.vtp"]


__all__ = ["basin_pairs", "sample_path", "saddle_paths", "write_outputs"]
