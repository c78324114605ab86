"""Critical points by lower/upper link components, with TTK's ``CriticalType`` codes."""

from __future__ import annotations

import numpy as np

from globscope.names import CriticalType as CT

from . import _kernels
from .grid import link_adjacency
from .order import prepare_field
from .results import CriticalPoints
from .sweep import grid_arrays

__all__ = ["critical_points", "classify"]


def classify(lower: np.ndarray, upper: np.ndarray, ndim: int) -> np.ndarray:
    """TTK ``ScalarFieldCriticalPoints`` rule from link component counts.

    0 lower components: minimum (0); 0 upper: maximum (3); 1 and 1: regular (5). Otherwise in
    1-D and 2-D: saddle (1) when neither count exceeds 2, else degenerate (4); in 3-D and 4-D:
    1-saddle (1) for (2, 1), 2-saddle (2) for (1, 2) and degenerate (4) otherwise (in 4-D the
    codes describe only the link's connectivity).

    Parameters
    ----------
    lower, upper : ndarray of int, shape (N,)
        Component counts, -1 for masked vertices.
    ndim : int

    Returns
    -------
    critical_type : ndarray of int8, shape (N,)
    """
    ct = np.full(lower.shape, CT.DEGENERATE, dtype=np.int8)
    if ndim <= 2:
        ct[(lower <= 2) & (upper <= 2)] = CT.SADDLE1
    else:
        ct[(lower == 2) & (upper == 1)] = CT.SADDLE1
        ct[(lower == 1) & (upper == 2)] = CT.SADDLE2
    ct[(lower == 1) & (upper == 1)] = CT.REGULAR
    ct[lower == 0] = CT.MINIMUM
    ct[upper == 0] = CT.MAXIMUM
    ct[(lower == 0) & (upper == 0)] = CT.REGULAR  # isolated vertex (mask): no link at all
    ct[lower < 0] = -1
    return ct


def critical_points(F, mask=None) -> CriticalPoints:
    """Classify every vertex by the connected components of its lower and upper link.

    The link is that of the grid triangulation (:mod:`globscope.topology.grid`); lower/upper
    neighbours are compared by (value, vertex id). This is the rule of TTK's generic
    ``ScalarFieldCriticalPoints``. It equals TTK 1.2's output everywhere in 2-D; in 3-D TTK 1.2's
    default (progressive) backend additionally reports some *boundary* vertices whose lower and
    upper links are both connected as 1- or 2-saddles (mostly extrema of the field restricted to
    the boundary face); those vertices are regular here, as the sublevel-set topology says.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
    mask : array_like of bool, same shape as F, optional

    Returns
    -------
    CriticalPoints
    """
    fi = prepare_field(F, mask)
    dims, strides, offs = grid_arrays(fi.shape)
    n = fi.n_vertices
    boundary = np.zeros(n, dtype=np.bool_)
    lower = np.empty(n, dtype=np.int64)
    upper = np.empty(n, dtype=np.int64)
    _kernels.link_components(fi.rank, dims, strides, offs, link_adjacency(fi.ndim), boundary,
                             lower, upper)
    ct = classify(lower, upper, fi.ndim)
    verts = np.nonzero((ct != CT.REGULAR) & (ct >= 0))[0].astype(np.int64)
    return CriticalPoints(
        critical_type=ct,
        lower_components=lower,
        upper_components=upper,
        is_on_boundary=boundary,
        vertices=verts,
        types=ct[verts],
        values=fi.values[verts],
    )
