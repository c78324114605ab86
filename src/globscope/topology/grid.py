"""Regular-grid triangulations: TTK's implicit triangulation (d <= 3) and its 4-D analogue.

Every grid vertex is named by its VTK point id (x fastest; :mod:`globscope.grid` states the rule).

Triangulation
-------------
TTK's implicit triangulation of a regular grid is the Freudenthal (Kuhn) triangulation of the
cubes *with the x axis reversed*: two vertices are joined by an edge when their offset is
``±(-s_x, s_y, s_z, s_w)`` for a non-empty 0/1 vector ``s``. This gives

* 1-D: 2 neighbours, ``±(1)``;
* 2-D: 6 neighbours, ``±(1,0), ±(0,1), ±(1,-1)`` (each quad split along the diagonal from
  ``(i+1, j)`` to ``(i, j+1)``);
* 3-D: 14 neighbours, ``±(1,0,0), ±(0,1,0), ±(0,0,1), ±(1,-1,0), ±(1,0,-1), ±(0,1,1),
  ±(1,-1,-1)`` (six tetrahedra per cube), exactly TTK's;
* 4-D: the same construction, 30 neighbours (24 pentatopes per hypercube). TTK has no 4-D
  implicit triangulation; this is the natural extension (x-reversed Freudenthal), and it restricts
  to TTK's triangulation on every 3-D slice ``l = const``.

The Freudenthal triangulation is a flag complex: a set of vertices spans a simplex exactly when its
vertices are pairwise adjacent. Hence the link of a vertex, as far as connectivity goes, is the
graph on its neighbours whose edges are the grid edges between them (:func:`link_adjacency`).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

from globscope.grid import MAX_DIM, point_ids

__all__ = [
    "MAX_DIM",
    "neighbor_offsets",
    "link_adjacency",
    "padded_offsets",
    "kuhn_simplices",
]


@cache
def _offsets(d: int) -> tuple:
    if not 1 <= d <= MAX_DIM:
        raise ValueError(f"grid dimension must be 1..{MAX_DIM}, got {d}")
    flip = np.ones(d, dtype=np.int64)
    flip[0] = -1  # x axis reversed: TTK's diagonal choice
    out = []
    for s in itertools.product((0, 1), repeat=d):
        s = np.array(s, dtype=np.int64)
        if not s.any():
            continue
        v = s * flip
        # canonical sign: first non-zero component positive
        nz = v[np.nonzero(v)[0][0]]
        if nz < 0:
            v = -v
        out.append(tuple(int(x) for x in v))
    out.sort(key=lambda t: (sum(abs(x) for x in t), [-abs(x) for x in t], t))
    full = []
    for t in out:
        full.append(t)
        full.append(tuple(-x for x in t))
    return tuple(full)


def neighbor_offsets(d: int) -> np.ndarray:
    """Offsets of the neighbours of a grid vertex, in (i, j, k, l) index space.

    Parameters
    ----------
    d : int
        Grid dimension, 1..4.

    Returns
    -------
    offsets : ndarray of int64, shape (2 * (2**d - 1), d)
        Pairs ``+o, -o`` one after the other.
    """
    return np.array(_offsets(d), dtype=np.int64).reshape(-1, d)


@cache
def _link_adjacency(d: int) -> bytes:
    offs = neighbor_offsets(d)
    sset = {tuple(o) for o in offs}
    k = len(offs)
    adj = np.zeros((k, k), dtype=np.bool_)
    for a in range(k):
        for b in range(k):
            if a != b and tuple(offs[a] - offs[b]) in sset:
                adj[a, b] = True
    return adj.tobytes()


def link_adjacency(d: int) -> np.ndarray:
    """Which pairs of neighbour slots of a vertex are joined by an edge of its link.

    Returns
    -------
    adj : ndarray of bool, shape (K, K)
        ``adj[a, b]`` is true when neighbours ``a`` and ``b`` (rows of :func:`neighbor_offsets`)
        are adjacent, i.e. span a triangle with the vertex.
    """
    k = len(_offsets(d))
    return np.frombuffer(_link_adjacency(d), dtype=np.bool_).reshape(k, k).copy()


def padded_offsets(d: int) -> np.ndarray:
    """:func:`neighbor_offsets` padded with zero columns to shape (K, 4)."""
    offs = neighbor_offsets(d)
    out = np.zeros((len(offs), MAX_DIM), dtype=np.int64)
    out[:, :d] = offs
    return out


def kuhn_simplices(shape) -> np.ndarray:
    """All top-dimensional simplices of the triangulation (for cross-checks; small grids only).

    Each d-cube with lower corner ``c`` is cut into ``d!`` simplices, one per permutation ``p`` of
    the axes: ``c' , c' + e_p0, c' + e_p0 + e_p1, ...`` in the x-reversed coordinates.

    Returns
    -------
    simplices : ndarray of int64, shape (n_simplices, d + 1)
        VTK vertex ids.
    """
    shape = tuple(int(s) for s in shape)
    d = len(shape)
    cells = [range(max(s - 1, 0)) for s in shape]
    out = []
    flip = np.ones(d, dtype=np.int64)
    flip[0] = -1
    for c in itertools.product(*cells):
        base = np.array(c, dtype=np.int64)
        base[0] = c[0] + 1  # x reversed: start from the far x corner
        for perm in itertools.permutations(range(d)):
            p = base.copy()
            simplex = [p.copy()]
            for a in perm:
                p[a] += flip[a]
                simplex.append(p.copy())
            out.append(point_ids(shape, np.array(simplex)))
    if not out:
        return np.zeros((0, d + 1), dtype=np.int64)
    return np.array(out, dtype=np.int64)
