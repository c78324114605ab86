"""Minimax paths: between two vertices, the path whose highest vertex is lowest.

On the grid triangulation (:mod:`globscope.topology.grid`), with vertices ordered by (value,
vertex id), the highest vertex of such a path between two minima is the join saddle at which their
sublevel-set components merge; among those paths this one has the fewest edges.
"""

from __future__ import annotations

import numpy as np

from globscope.errors import GlobscopeError

from . import _kernels
from .order import prepare_field
from .sweep import grid_arrays

__all__ = ["minimax_path"]


def minimax_path(F, source: int, target: int, mask=None) -> np.ndarray:
    """The minimax path from ``source`` to ``target`` (vertex ids).

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]``, i along x; vertex id ``i + nx*(j + ny*(k + nz*l))``.
    source, target : int
        Vertex ids.
    mask : array_like of bool, same shape as F, optional
        Vertices to avoid.

    Returns
    -------
    path : ndarray of int64, shape (n,)
        Vertex ids from ``source`` to ``target``, consecutive ones joined by an edge; its highest
        vertex (by value, then id) is the lowest such vertex of any path between the two.
    """
    fi = prepare_field(F, mask)
    for v in (source, target):
        if not 0 <= v < fi.n_vertices or fi.rank[v] < 0:
            raise GlobscopeError(f"vertex {v} is not an unmasked vertex of the {fi.shape} grid")
    dims, strides, offs = grid_arrays(fi.shape)
    level = _kernels.bottleneck_rank(fi.rank, fi.verts, dims, strides, offs, int(source), int(target))
    if level < 0:
        raise GlobscopeError(f"vertices {source} and {target} are not connected (the mask separates them)")
    return _kernels.sublevel_path(fi.rank, dims, strides, offs, int(source), int(target), int(level))
