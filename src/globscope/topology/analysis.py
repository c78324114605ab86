"""One call for the whole topological summary of a field (what ``globscope topology`` writes)."""

from __future__ import annotations

import time

from globscope.errors import Aborted, GlobscopeError
from globscope.grid import to_field

from .critical_points import critical_points
from .merge_tree import tree_from_sweep
from .order import prepare_field
from .persistence import pairs_from_sweep
from .results import TopologyResult
from .simplification import absolute_threshold, simplify_pairs
from .sweep import sublevel_sweep

__all__ = ["analyze"]


def analyze(F, persistence: float | None = None, absolute: bool = False, mask=None, *, order=None,
            progress=None, should_abort=None) -> TopologyResult:
    """Persistence pairs of a field, its simplification, and the topology of the simplified field.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]`` with i along x (Globscope's loss-field convention); vertex ids are VTK
        point ids ``i + nx*(j + ny*(k + nz*l))``.
    persistence : float or None
        Simplification threshold, a fraction of the finite value range unless ``absolute``: the
        finite pairs of persistence <= threshold are removed (0 removes the zero-persistence pairs
        of plateaus, as TTK); None (default) = no simplification.
    absolute : bool
    mask : array_like of bool, same shape as F, optional
        Vertices to ignore.
    order : array_like of int, optional
        A strict vertex order to use instead of (value, vertex id): TTK's ``<array>_Order`` of a
        field simplified before (flat in VTK order, or shaped like F).
    progress : callable(float), optional
        Called with the fraction done (0..1) between stages.
    should_abort : callable() -> bool, optional
        Polled between stages; :class:`globscope.errors.Aborted` is raised when it returns true.

    Returns
    -------
    TopologyResult
        ``pairs``: pairs of the input field (essential pair first); ``simplification``: simplified
        field and its TTK ``Order`` array; ``pairs_simplified``, ``critical_points`` and
        ``join_tree``: of the simplified field, computed with that order (as TTK does when it is
        given the Order array).
    """
    timings = {}

    def stage(name, frac, t0):
        timings[name] = time.perf_counter() - t0
        if progress is not None:
            progress(frac)
        if should_abort is not None and should_abort():
            raise Aborted(f"aborted after {name}")
        return time.perf_counter()

    t = time.perf_counter()
    fi = prepare_field(F, mask, order=order)
    if fi.n_nonfinite == fi.verts.shape[0]:
        raise GlobscopeError(f"no finite value in the field ({fi.n_nonfinite} vertices, all NaN or Inf): "
                             "it has no minima to find")
    t = stage("order", 0.1, t)
    sw = sublevel_sweep(fi)
    pairs = pairs_from_sweep(sw)
    t = stage("pairs", 0.35, t)
    thr = absolute_threshold(fi.values[~fi.mask], persistence, absolute)
    simp = simplify_pairs(fi, pairs, thr)
    t = stage("simplification", 0.5, t)
    if simp.removed_minima.size:
        fs = prepare_field(to_field(simp.values, fi.shape),
                           None if not fi.mask.any() else to_field(fi.mask, fi.shape),
                           order=simp.order)
        sw_s = sublevel_sweep(fs)
        pairs_s = pairs_from_sweep(sw_s)
    else:
        fs, sw_s, pairs_s = fi, sw, pairs
    tree = tree_from_sweep(sw_s)
    t = stage("join_tree", 0.75, t)
    cps = critical_points(fs)
    stage("critical_points", 1.0, t)
    return TopologyResult(
        shape=fi.shape,
        n_nonfinite=fi.n_nonfinite,
        pairs=pairs,
        simplification=simp,
        pairs_simplified=pairs_s,
        critical_points=cps,
        join_tree=tree,
        timings=timings,
    )
