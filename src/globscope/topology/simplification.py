"""Topological simplification by persistence (minimum–saddle pairs), as TTK 1.2 does it."""

from __future__ import annotations

import numpy as np

from . import _kernels
from .order import FieldInput
from .persistence import pairs_from_sweep
from .results import PersistencePairs, Simplification
from .sweep import grid_arrays, sublevel_sweep

__all__ = ["simplify", "absolute_threshold"]


def absolute_threshold(values: np.ndarray, persistence: float | None, absolute: bool) -> float | None:
    """``persistence`` itself when ``absolute``, else that fraction of the finite value range
    (None stays None: no simplification)."""
    if persistence is None:
        return None
    persistence = float(persistence)
    if persistence < 0 or not np.isfinite(persistence):
        raise ValueError(f"persistence threshold must be finite and >= 0, got {persistence}")
    if absolute:
        return persistence
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0
    return persistence * float(finite.max() - finite.min())


def simplify_pairs(fi: FieldInput, pairs: PersistencePairs, threshold: float | None) -> Simplification:
    """Remove every finite pair with persistence <= ``threshold`` (see :func:`simplify`); ``None``
    removes nothing."""
    f = fi.values
    removed = pairs.is_finite & (pairs.persistence <= (-np.inf if threshold is None else threshold))
    surviving = np.zeros(fi.n_vertices, dtype=np.bool_)
    surviving[pairs.birth_vertex[~removed]] = True
    # a removed pair is flattened on its own when the older minimum it merges into survives;
    # otherwise its basin lies inside that older minimum's flattened basin
    top = removed & surviving[np.maximum(pairs.elder_vertex, 0)]
    mins = pairs.birth_vertex[top]
    sads = pairs.death_vertex[top]
    if mins.size == 0:
        return Simplification(threshold, f.copy(), fi.rank.copy(), pairs.birth_vertex[removed],
                              pairs.death_vertex[removed], 0)
    dims, strides, offs = grid_arrays(fi.shape)
    segid = np.full(fi.n_vertices, -1, dtype=np.int64)
    segs, start = _kernels.flatten_segments(fi.rank, dims, strides, offs, mins, sads, segid)
    sizes = np.diff(start)
    owner_saddle = np.repeat(sads, sizes)
    values = f.copy()
    values[segs] = f[owner_saddle]
    # TTK LTS order: in the inverted order (minima become maxima), every segment takes its
    # saddle's order and is ranked just below it by the local order; then invert back
    n_active = fi.verts.shape[0]
    inv = np.where(fi.rank >= 0, n_active - 1 - fi.rank, -1)
    local = _kernels.lts_local_order(inv, dims, strides, offs, fi.rank, segs, start, sads, segid,
                                     n_active)
    key = inv.copy()
    key[segs] = inv[owner_saddle]
    active = fi.verts
    srt = active[np.lexsort((active, local[active], key[active]))]
    order = np.full(fi.n_vertices, -1, dtype=np.int64)
    order[srt] = np.arange(n_active - 1, -1, -1, dtype=np.int64)
    return Simplification(
        threshold=threshold,
        values=values,
        order=order,
        removed_minima=pairs.birth_vertex[removed],
        removed_saddles=pairs.death_vertex[removed],
        n_changed=int(np.count_nonzero(values != f) - np.count_nonzero(np.isnan(values) & np.isnan(f))),
    )


def simplify(F, persistence: float, absolute: bool = False, mask=None) -> Simplification:
    """Simplify the minima of a field by persistence (TTK PairType = Minimum-Saddle).

    Every minimum–saddle pair with persistence ``<= threshold`` is removed: its basin (the
    component of ``{vertices below the saddle}`` that holds the minimum) is flattened to the
    saddle's value. Only the minima of pairs with persistence above the threshold (and the
    global minimum) survive, and the pairs of the result are exactly those pairs. The ``Order``
    array keeps ties strict exactly as TTK 1.2's localized simplification (LTS) does: each
    flattened basin is ordered just above its saddle, inside it by LTS's alternating super-/
    sublevel propagations, so that it holds no extremum. A threshold of 0 removes the pairs of
    zero persistence (the flat basins of plateaus), as TTK does; ``None`` simplifies nothing.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
    persistence : float or None
        Threshold: a fraction of the finite value range (``max - min``), or an absolute value
        when ``absolute``.
    absolute : bool
    mask : array_like of bool, same shape as F, optional

    Returns
    -------
    Simplification
        ``values`` and ``order`` are flat, in VTK vertex order.
    """
    sw = sublevel_sweep(F, mask)
    thr = absolute_threshold(sw.field.values[~sw.field.mask], persistence, absolute)
    return simplify_pairs(sw.field, pairs_from_sweep(sw), thr)
