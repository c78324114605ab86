"""The topology stage through native TTK: run TTK's filters in pvpython on the same field file and
turn their outputs into the :class:`TopologyResult` Globscope's own engine gives, so that
``globscope topology --engine ttk`` writes the same files and the two engines can be compared.

The core never imports ParaView: pvpython runs ``globscope_state.py ttk-topology`` (which calls
:func:`python_filters.ttk.native_topology`) and hands back one ``.npz``.

What comes from TTK: the persistence pairs of the input and of the simplified field, the
simplified field and its ``<array>_Order``, the join tree's nodes, arcs and segmentation. What
Globscope adds: exact field values where TTK stores float32 (node ``Scalar``), its numbering of
nodes (by vertex order, as TTK 1.2; TTK 1.1 numbers them by vertex id) and arcs
(:func:`merge_tree.arc_order`; TTK's normalized ids are a permutation of the saddle arcs), and
the critical points of the simplified field (TTK's ``ScalarFieldCriticalPoints`` is not among the
filters the routing drives), classified with TTK's order array.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from globscope.errors import GlobscopeError
from globscope.grid import to_field
from globscope.names import PairType

from .critical_points import critical_points
from .merge_tree import arc_order
from .order import prepare_field
from .results import JoinTree, PersistencePairs, Simplification, TopologyResult
from .simplification import absolute_threshold

__all__ = ["analyze_native", "result_from_ttk", "TTKUnavailable"]
NO_TTK_MARK = "GLOBSCOPE-NO-TTK "  # globscope_state.py ttk-topology: TTK not found (exit 3)


class TTKUnavailable(GlobscopeError):
    """Native TTK cannot run here (no pvpython, no plugin, or a field it cannot take)."""


def analyze_native(field, persistence: float, absolute: bool, timeout: float | None = 1800) -> TopologyResult:
    """:func:`globscope.topology.analyze` computed by native TTK (through pvpython).

    Parameters
    ----------
    field : globscope.topology.export.GridField
        Read from a ``.vti`` (TTK reads the same file).
    persistence, absolute
        As for :func:`analyze`.

    Returns
    -------
    TopologyResult
        ``timings`` holds TTK's seconds per filter and ``pvpython`` (the whole run, start-up included);
        ``engine`` = {"name": "ttk", "version", "plugin_version"}.
    """
    from globscope import paraview_launch as pl  # the core's one door to ParaView's programs

    path = Path(field.path)
    if path.suffix.lower() != ".vti":
        raise TTKUnavailable(f"{path}: native TTK reads VTK image data (.vti, d <= 3); use --engine globscope")
    n_bad = int(np.count_nonzero(~np.isfinite(field.values)))
    if n_bad:
        raise TTKUnavailable(f"{path}: {field.name!r} holds {n_bad} non-finite values, which TTK cannot order; "
                             "use --engine globscope (it orders them above every finite value)")
    try:
        pl.find_executable("pvpython")
    except GlobscopeError as e:
        raise TTKUnavailable(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="globscope-ttk-") as tmp:
        out = Path(tmp) / "ttk.npz"
        t = time.perf_counter()
        r = pl.run_script("pvpython", pl.state_script(),
                          ["ttk-topology", "--field", path.resolve(), "--array", field.name,
                           "--persistence", repr(float(persistence)), "--absolute", int(bool(absolute)),
                           "--out", out],
                          display=False, timeout=timeout, env={"GLOBSCOPE_TOPOLOGY_ENGINE": "auto"}, check=False)
        wall = time.perf_counter() - t
        no_ttk = [ln[len(NO_TTK_MARK):] for ln in r.stdout.splitlines() if ln.startswith(NO_TTK_MARK)]
        if no_ttk:
            raise TTKUnavailable(f"native TTK not found by pvpython: {no_ttk[-1]}")
        if r.returncode != 0 or not out.is_file():
            tail = [ln for ln in (r.stdout + r.stderr).splitlines() if "GlobscopeError" in ln or "Error" in ln]
            why = (tail or (r.stdout + r.stderr).strip().splitlines() or ["?"])[-1]
            raise GlobscopeError(f"native TTK failed on {path} (pvpython exit {r.returncode}): {why}")
        with np.load(out, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    res = result_from_ttk(arrays, field.values, persistence, absolute)
    res.timings["pvpython"] = wall
    return res


def _pairs(a: dict, prefix: str, values: np.ndarray, rank: np.ndarray) -> PersistencePairs:
    """The minimum-saddle pairs of a TTK diagram, as Globscope lists them (the essential pair, then
    the finite pairs by birth); the essential pair is added when TTK left it out (1.2+ asked for
    minimum-saddle pairs only gives no infinite pairs)."""
    cells = a[f"{prefix}/cells"]
    keep = (a[f"{prefix}/cell/PairIdentifier"] >= 0) & (a[f"{prefix}/cell/PairType"] == PairType.MINIMUM_SADDLE)
    vid = a[f"{prefix}/point/ttkVertexScalarField"].astype(np.int64)
    birth_v, death_v = vid[cells[keep, 0]], vid[cells[keep, 1]]
    finite = a[f"{prefix}/cell/IsFinite"][keep].astype(bool)
    if finite.all():
        birth_v = np.concatenate([[np.argmin(rank)], birth_v])
        death_v = np.concatenate([[np.argmax(rank)], death_v])
        finite = np.concatenate([[False], finite])
    sort = np.lexsort((rank[birth_v], finite))  # essential first, then by birth
    b, d = birth_v[sort], death_v[sort]
    birth, death = values[b], values[d]
    return PersistencePairs(
        birth_vertex=b, death_vertex=d, birth=birth, death=death, persistence=death - birth,
        is_finite=finite[sort], pair_type=np.full(b.shape[0], int(PairType.MINIMUM_SADDLE), np.int64),
        elder_vertex=np.full(b.shape[0], -1, np.int64))  # TTK does not report the elder minimum


def _join_tree(a: dict, values: np.ndarray, rank: np.ndarray) -> JoinTree:
    """The join tree in Globscope's numbering: nodes by vertex order (TTK 1.2 does the same; 1.1
    numbers them by vertex id), arcs by :func:`merge_tree.arc_order`."""
    ttk_vertex = np.empty(a["nodes/point/NodeId"].shape[0], np.int64)
    ttk_vertex[a["nodes/point/NodeId"]] = a["nodes/point/VertexId"]
    ttk_type = np.empty(ttk_vertex.shape[0], np.int8)
    ttk_type[a["nodes/point/NodeId"]] = a["nodes/point/CriticalType"]
    by_rank = np.argsort(rank[ttk_vertex], kind="stable")
    node_new = np.empty_like(by_rank)
    node_new[by_rank] = np.arange(by_rank.shape[0])
    node_vertex = ttk_vertex[by_rank]
    ttk_arc = a["arcs/cell/SegmentationId"].astype(np.int64)
    down = np.empty(ttk_arc.shape[0], np.int64)
    up = np.empty_like(down)
    down[ttk_arc] = node_new[a["arcs/cell/downNodeId"]]
    up[ttk_arc] = node_new[a["arcs/cell/upNodeId"]]
    perm = arc_order(down, up, node_vertex.shape[0])
    arc_new = np.empty_like(perm)
    arc_new[perm] = np.arange(perm.shape[0])
    seg = a["segmentation/point/SegmentationId"].astype(np.int64)
    return JoinTree(node_vertex=node_vertex, node_scalar=values[node_vertex], node_type=ttk_type[by_rank],
                    arc_down=down[perm], arc_up=up[perm],
                    segmentation=np.where(seg >= 0, arc_new[np.maximum(seg, 0)], -1))


def result_from_ttk(a: dict, F: np.ndarray, persistence: float, absolute: bool) -> TopologyResult:
    """A :class:`TopologyResult` from :func:`python_filters.ttk.native_topology`'s arrays.

    Parameters
    ----------
    a : dict of name -> ndarray
        The ``.npz`` written by ``globscope_state.py ttk-topology``.
    F : ndarray, shape (nx[, ny[, nz]])
        The input field (Globscope's convention, x first).
    """
    fi = prepare_field(F)
    values = fi.values
    pairs = _pairs(a, "diagram_in", values, fi.rank)
    simplified = np.asarray(a[next(k for k in a if k.startswith("simplified/point/") and not k.endswith("_Order"))],
                            dtype=np.float64)
    order = np.asarray(a[next(k for k in a if k.startswith("simplified/point/") and k.endswith("_Order"))],
                       dtype=np.int64)
    fs = prepare_field(to_field(simplified, fi.shape), order=order)
    pairs_s = _pairs(a, "diagram_out", simplified, order)
    kept = set(pairs_s.birth_vertex.tolist())
    gone = pairs.is_finite & ~np.isin(pairs.birth_vertex, list(kept))
    simp = Simplification(threshold=absolute_threshold(values, persistence, absolute), values=simplified,
                          order=order, removed_minima=pairs.birth_vertex[gone],
                          removed_saddles=pairs.death_vertex[gone],
                          n_changed=int(np.count_nonzero(simplified != values)))
    timings = {k.split("/", 1)[1]: float(v) for k, v in a.items() if k.startswith("seconds/")}
    res = TopologyResult(shape=fi.shape, n_nonfinite=fi.n_nonfinite, pairs=pairs, simplification=simp,
                         pairs_simplified=pairs_s, critical_points=critical_points(fs),
                         join_tree=_join_tree(a, simplified, order), timings=timings,
                         engine={"name": "ttk", "version": str(a["route/version"]),
                                 "plugin_version": str(a["route/plugin_version"])})
    return res
