"""Paths over a grid field.

:func:`minimax_path`: between two vertices, the path whose highest vertex is lowest. On the grid
triangulation (:mod:`globscope.topology.grid`), with vertices ordered by (value, vertex id), the
highest vertex of such a path between two minima is the join saddle at which their sublevel-set
components merge; among those paths this one has the fewest edges.

:func:`valley_path`: the path of a merge-tree arc drawn along the field, through low ground between
its two nodes (what a picture of the tree on the landscape follows).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from globscope.errors import GlobscopeError
from globscope.grid import grid_index, point_ids

from . import _kernels
from .order import prepare_field
from .sweep import grid_arrays

__all__ = ["minimax_path", "valley_path"]

# valley_path's cost of a unit of length on the lowest ground, relative to one at the height of the
# path's higher end: small enough that paths keep to valley floors, large enough that they do not
# wander across flat (simplified) ground for a minute saving
VALLEY_FLATNESS = 0.1


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


def valley_path(F, source: int, target: int, order=None, spacing=None) -> np.ndarray:
    """The path from ``source`` to ``target`` through low ground, never above the higher end.

    Among the paths over the vertices ranked at most as high as the higher end (for a merge-tree
    arc: within the sublevel set at its upper node, so the path never climbs a ridge above the
    saddle it joins at), the one of least ``∫ (h + VALLEY_FLATNESS) ds``, ``h`` the distance in
    value from the lower end as a fraction of the two ends' difference: from the upper end it
    descends to the lower end's level and keeps to it, along the valley floor for an arc from a
    minimum (water's way down); below that level ``h`` grows again, so an arc from a saddle dips
    into the basins under it only where it must. Vertices are joined to all their ``3**d - 1``
    neighbours (straighter paths than the triangulation's edges allow).

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]``, i along x; vertex id ``i + nx*(j + ny*(k + nz*l))``.
    source, target : int
        Vertex ids.
    order : array_like of int, optional
        A strict vertex order instead of (value, vertex id) (:func:`~.order.prepare_field`), e.g.
        the ``Order`` array of a simplified field, whose flattened regions tie in value.
    spacing : sequence of float, optional
        Grid spacing per axis (default 1): path lengths are measured in these units.

    Returns
    -------
    path : ndarray of int64, shape (n,)
        Vertex ids from ``source`` to ``target``, consecutive ones grid neighbours.
    """
    fi = prepare_field(F, order=order)
    for v in (source, target):
        if not 0 <= v < fi.n_vertices:
            raise GlobscopeError(f"vertex {v} is not a vertex of the {fi.shape} grid")
    low, high = sorted((int(source), int(target)), key=lambda v: fi.rank[v])
    below = (fi.rank >= 0) & (fi.rank <= fi.rank[high])
    rise = fi.values[high] - fi.values[low]
    h = np.abs(fi.values - fi.values[low]) / rise if rise > 0 else np.zeros(fi.n_vertices)
    h = np.minimum(np.nan_to_num(h, nan=1.0, posinf=1.0), 1.0)
    step = np.ones(fi.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)[:fi.ndim]
    index = grid_index(fi.shape, np.arange(fi.n_vertices))
    rows, cols, weights = [], [], []
    for offset in itertools.product((-1, 0, 1), repeat=fi.ndim):
        if next((o for o in offset if o), 0) <= 0:  # each undirected edge once: first non-zero > 0
            continue
        j = index + np.asarray(offset)
        ok = np.all((j >= 0) & (j < np.asarray(fi.shape)), axis=1)
        a, b = point_ids(fi.shape, index[ok]), point_ids(fi.shape, j[ok])
        keep = below[a] & below[b]
        a, b = a[keep], b[keep]
        rows.append(a)
        cols.append(b)
        weights.append(np.linalg.norm(np.asarray(offset) * step) * ((h[a] + h[b]) / 2 + VALLEY_FLATNESS))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(fi.n_vertices, fi.n_vertices)).tocsr()
    _, previous = dijkstra(graph, directed=False, indices=int(target), return_predecessors=True)
    if source != target and previous[source] < 0:
        raise GlobscopeError(f"vertices {source} and {target} are not connected below the higher one")
    path = [int(source)]
    while path[-1] != target:
        path.append(int(previous[path[-1]]))
    return np.asarray(path, dtype=np.int64)
