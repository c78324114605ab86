"""Total order of the grid vertices: (value, vertex id), TTK's simulation of simplicity.

Non-finite values (NaN, +inf, -inf: e.g. diverged decoded models) are ordered *above* every finite
value, among themselves by vertex id, so they enter the sublevel sets last. They are counted, never
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from globscope.grid import MAX_DIM, to_points

__all__ = ["FieldInput", "prepare_field", "vertex_order", "rank_of_values"]


@dataclass(frozen=True)
class FieldInput:
    """A validated scalar field, flattened to VTK vertex order.

    Attributes
    ----------
    shape : tuple of int, length d
        Grid shape ``(nx, ny[, nz[, nw]])``.
    values : ndarray of float64, shape (N,)
        :func:`globscope.grid.to_points` of the field.
    mask : ndarray of bool, shape (N,)
        True for vertices to ignore (they take no part in any computation).
    rank : ndarray of int64, shape (N,)
        Position of each vertex in the total order, ``-1`` for masked vertices.
    verts : ndarray of int64, shape (n_active,)
        Unmasked vertices sorted by rank (``verts[rank[v]] == v``).
    n_nonfinite : int
        Number of unmasked vertices with a non-finite value.
    """

    shape: tuple
    values: np.ndarray
    mask: np.ndarray
    rank: np.ndarray
    verts: np.ndarray
    n_nonfinite: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_vertices(self) -> int:
        return int(self.values.shape[0])


def rank_of_values(values: np.ndarray, mask: np.ndarray | None = None):
    """Sort vertices by (finite first, value, vertex id).

    Parameters
    ----------
    values : ndarray, shape (N,)
    mask : ndarray of bool, shape (N,), optional

    Returns
    -------
    rank : ndarray of int64, shape (N,)   (-1 where masked)
    verts : ndarray of int64, shape (n_active,)
    n_nonfinite : int
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    finite = np.isfinite(values)
    key = np.where(finite, values, 0.0)
    verts = np.argsort(key, kind="stable")  # ties by vertex id
    nonfinite_sorted = ~finite[verts]
    n_nonfinite_all = int(np.count_nonzero(nonfinite_sorted))
    if n_nonfinite_all:
        verts = np.concatenate([verts[~nonfinite_sorted], np.nonzero(~finite)[0]])
    if mask is not None:
        keep = ~mask[verts]
        verts = verts[keep]
        n_nonfinite = int(np.count_nonzero(~finite & ~mask))
    else:
        n_nonfinite = n_nonfinite_all
    verts = verts.astype(np.int64, copy=False)
    rank = np.full(n, -1, dtype=np.int64)
    rank[verts] = np.arange(verts.shape[0], dtype=np.int64)
    return rank, verts, n_nonfinite


def prepare_field(F, mask=None, order=None) -> FieldInput:
    """Validate a field in Globscope's convention and compute its vertex order.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]`` with ``i`` along x. Vertex id ``i + nx*(j + ny*(k + nz*l))``.
    mask : array_like of bool, same shape as F, optional
        True for vertices to ignore.
    order : array_like of int, optional
        A precomputed strict vertex order to use instead of (value, vertex id), e.g. TTK's
        ``Order`` array of a simplified field: same shape as F, or flat in VTK order. The ranks
        of the unmasked vertices must be distinct; only their relative order matters.

    Returns
    -------
    FieldInput
    """
    if isinstance(F, FieldInput):
        return F
    F = np.asarray(F)
    if F.dtype.kind not in "fiub":
        raise TypeError(f"the field must be numeric, got dtype {F.dtype}")
    if not 1 <= F.ndim <= MAX_DIM:
        raise ValueError(f"the field must have 1 to {MAX_DIM} dimensions, got shape {F.shape}")
    if F.size == 0:
        raise ValueError("the field is empty")
    values = np.ascontiguousarray(to_points(F.astype(np.float64, copy=False)))
    if mask is None:
        m = np.zeros(values.shape[0], dtype=np.bool_)
    else:
        mask = np.asarray(mask, dtype=np.bool_)
        if mask.shape != F.shape:
            raise ValueError(f"mask shape {mask.shape} differs from field shape {F.shape}")
        m = np.ascontiguousarray(to_points(mask))
    if m.all():
        raise ValueError("every vertex is masked")
    rank, verts, n_nonfinite = rank_of_values(values, m if mask is not None else None)
    if order is not None:
        order = np.asarray(order)
        if order.shape == F.shape and F.ndim > 1:
            order = to_points(order)
        order = order.reshape(-1).astype(np.int64)
        if order.shape[0] != values.shape[0]:
            raise ValueError(f"order has {order.shape[0]} entries, the field {values.shape[0]}")
        active = np.nonzero(~m)[0]
        verts = active[np.argsort(order[active], kind="stable")].astype(np.int64)
        if np.any(np.diff(order[verts]) == 0):
            raise ValueError("order must be strict (distinct ranks)")
        rank = np.full(values.shape[0], -1, dtype=np.int64)
        rank[verts] = np.arange(verts.shape[0], dtype=np.int64)
    return FieldInput(tuple(int(s) for s in F.shape), values, m, rank, verts, n_nonfinite)


def vertex_order(F, mask=None) -> np.ndarray:
    """TTK's order array: rank of each vertex by (value, vertex id), non-finite last.

    Returns
    -------
    order : ndarray of int64, shape (N,)
        In VTK vertex order; ``-1`` for masked vertices.
    """
    return prepare_field(F, mask).rank
