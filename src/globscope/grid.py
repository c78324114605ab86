"""Regular grids: the one geometry type of loss fields, topology, the VTK XML layer and the filters.

A field over a grid of shape ``(nx, ny[, nz[, nw]])`` is a float array indexed ``F[i, j(, k, l)]``
with ``i`` along x. Its vertices are numbered as VTK numbers the points of an image, x fastest:
vertex ``(i, j, k, l)`` has point id ``i + nx*(j + ny*(k + nz*l))``, the position of ``F[i, j, k, l]``
in ``F.ravel(order="F")``. This module is the only place that states that rule
(:func:`to_points`, :func:`to_field`, :func:`point_ids`, :func:`grid_index`, :func:`strides`).

A VTK image may store only part of its index space: its *extent* ``(i0, i1, j0, j1, k0, k1)`` need
not start at 0 (a VOI extracted from a larger image). Point ids are then counted within the stored
extent, and the first stored vertex lies at ``origin + start * spacing``. :meth:`Grid.from_extent`
folds that offset into the grid's origin, so every other method works on stored vertices only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from globscope.errors import GlobscopeError

MAX_DIM = 4


# -- the point-order rule -------------------------------------------------------------------------
def to_points(F) -> np.ndarray:
    """A field ``F[i, j, …]`` (any trailing component axes kept) in point-id order.

    Parameters
    ----------
    F : array of shape (nx, ny[, nz[, nw]])

    Returns
    -------
    ndarray of shape (n_points,)
    """
    return np.asarray(F).reshape(-1, order="F")


def to_field(values, shape) -> np.ndarray:
    """Values in point-id order as a field ``F[i, j, …]``; inverse of :func:`to_points`.

    Parameters
    ----------
    values : array of shape (n_points,)
    shape : tuple of int, length d

    Returns
    -------
    ndarray of shape ``shape``
    """
    return np.asarray(values).reshape(tuple(int(n) for n in shape), order="F")


def padded_shape(shape) -> np.ndarray:
    """The shape padded with ones to length 4, int64 (what the topology kernels take)."""
    dims = np.ones(MAX_DIM, dtype=np.int64)
    dims[: len(shape)] = shape
    return dims


def strides(shape) -> np.ndarray:
    """Point-id step of each axis (x fastest), padded to length 4, int64."""
    dims = padded_shape(shape)
    out = np.ones(MAX_DIM, dtype=np.int64)
    for a in range(1, MAX_DIM):
        out[a] = out[a - 1] * dims[a - 1]
    return out


def point_ids(shape, index) -> np.ndarray:
    """Point ids of grid indices.

    Parameters
    ----------
    shape : tuple of int, length d
    index : array_like of int, shape (..., d)

    Returns
    -------
    ndarray of int64, shape (...)
    """
    return np.asarray(index, dtype=np.int64) @ strides(shape)[: len(shape)]


def grid_index(shape, ids) -> np.ndarray:
    """Grid indices of point ids; inverse of :func:`point_ids`.

    Parameters
    ----------
    shape : tuple of int, length d
    ids : array_like of int, shape (n,)

    Returns
    -------
    ndarray of int64, shape (n, d)
    """
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack(np.unravel_index(ids, tuple(int(n) for n in shape), order="F"), axis=-1).astype(np.int64)


# -- the geometry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A regular grid of 1 to 4 axes.

    Parameters
    ----------
    origin : tuple of float, length d
        Coordinates of the first stored vertex, index (0, …, 0).
    spacing : tuple of float, length d
        Distance between neighbouring vertices along each axis (positive).
    shape : tuple of int, length d
        Vertices per axis (nx, ny[, nz[, nw]]).
    """

    origin: tuple
    spacing: tuple
    shape: tuple

    def __post_init__(self):
        d = len(self.shape)
        if not 1 <= d <= MAX_DIM:
            raise GlobscopeError(f"grid: dimension must be 1 to {MAX_DIM}, got {d}")
        if len(self.origin) != d or len(self.spacing) != d:
            raise GlobscopeError("grid: origin, spacing and shape must have the same length")
        if any(int(n) < 1 for n in self.shape):
            raise GlobscopeError(f"grid: at least 1 vertex per axis, got {tuple(self.shape)}")
        if not all(np.isfinite(self.spacing)) or any(s <= 0 for s in self.spacing):
            raise GlobscopeError(f"grid: spacing must be positive and finite, got {tuple(self.spacing)}")
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))

    @classmethod
    def from_extent(cls, origin, spacing, extent) -> Grid:
        """The stored part of a VTK image: ``extent`` ``(i0, i1, j0, j1, k0, k1)`` may start
        anywhere; trailing axes of one vertex are dropped (a 2-D image is a 2-D grid).

        Parameters
        ----------
        origin, spacing : sequence of 3 float
            The image's ``GetOrigin()`` (position of index 0, not of the first stored vertex)
            and ``GetSpacing()``.
        extent : sequence of 6 int
        """
        ext = [int(e) for e in extent]
        start = np.array(ext[0::2], dtype=np.float64)
        shape = [ext[2 * a + 1] - ext[2 * a] + 1 for a in range(3)]
        d = 3
        while d > 1 and shape[d - 1] == 1:
            d -= 1
        first = np.asarray(origin, dtype=np.float64)[:3] + start * np.asarray(spacing, dtype=np.float64)[:3]
        return cls(tuple(first[:d]), tuple(spacing[:d]), tuple(shape[:d]))

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """Per axis (low, high)."""
        return [(o, o + s * (n - 1)) for o, s, n in zip(self.origin, self.spacing, self.shape)]

    def axes(self) -> list[np.ndarray]:
        """Per axis the vertex coordinates, arrays of shape (n_axis,)."""
        return [o + s * np.arange(n) for o, s, n in zip(self.origin, self.spacing, self.shape)]

    def padded(self, d: int = 3) -> tuple[tuple, tuple, tuple]:
        """(origin, spacing, shape) padded to ``d`` axes (0, 1, 1): what VTK image data takes."""
        k = d - self.dim
        return self.origin + (0.0,) * k, self.spacing + (1.0,) * k, self.shape + (1,) * k

    # -- vertices --------------------------------------------------------------------------------
    def ids(self, index) -> np.ndarray:
        """Point ids of grid indices (..., d) -> (...)."""
        return point_ids(self.shape, index)

    def index(self, ids) -> np.ndarray:
        """Grid indices of point ids (n,) -> (n, d)."""
        return grid_index(self.shape, ids)

    def coordinates(self, ids) -> np.ndarray:
        """Positions of vertices given by point id.

        Returns
        -------
        ndarray of shape (n, d), float64
        """
        return np.asarray(self.origin) + self.index(ids) * np.asarray(self.spacing)

    def points(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Coordinates of the vertices with point ids ``start … stop-1``.

        Returns
        -------
        ndarray of shape (stop - start, d), float64
        """
        stop = self.n_points if stop is None else min(stop, self.n_points)
        return self.coordinates(np.arange(start, stop))

    def to_field(self, values) -> np.ndarray:
        """A field of shape ``self.shape`` from values in point-id order, shape (n_points,)."""
        return to_field(values, self.shape)

    def nearest_vertex(self, Zq) -> tuple[np.ndarray, np.ndarray]:
        """The grid vertex nearest to each query point.

        Parameters
        ----------
        Zq : array of shape (M, d)

        Returns
        -------
        vertex_id : ndarray of int64, shape (M,)
            Point id of the nearest vertex, clamped onto the grid.
        inside : ndarray of bool, shape (M,)
            Whether the point lies within half a cell of the grid.
        """
        Zq = np.atleast_2d(np.asarray(Zq, dtype=np.float64))
        idx = np.rint((Zq - np.asarray(self.origin)) / np.asarray(self.spacing)).astype(np.int64)
        shape = np.asarray(self.shape)
        inside = np.all((idx >= 0) & (idx < shape), axis=1)
        return self.ids(np.clip(idx, 0, shape - 1)), inside

    def interpolate(self, F, Zq, outside: str = "clamp") -> np.ndarray:
        """Multilinear interpolation of the field ``F`` (shape ``self.shape``) at points ``Zq`` (M, d).

        A NaN or Inf vertex makes the cells around it NaN/Inf: non-finite values are never hidden.

        Parameters
        ----------
        outside : {"clamp", "nan"}
            Points outside the grid are clamped onto it, or get NaN.

        Returns
        -------
        ndarray of shape (M,), float64
        """
        Zq = np.atleast_2d(np.asarray(Zq, dtype=np.float64))
        F = np.asarray(F, dtype=np.float64)
        d = self.dim
        shape = np.asarray(self.shape)
        u = (Zq - np.asarray(self.origin)) / np.asarray(self.spacing)
        beyond = np.any((u < 0) | (u > shape - 1), axis=1)
        u = np.clip(u, 0, shape - 1)
        i0 = np.clip(np.floor(u).astype(int), 0, np.maximum(shape - 2, 0))
        t = u - i0
        out = np.zeros(len(Zq))
        for corner in range(2 ** d):
            bits = [(corner >> a) & 1 for a in range(d)]
            w = np.ones(len(Zq))
            for a, b in enumerate(bits):
                w = w * (t[:, a] if b else 1 - t[:, a])
            v = F[tuple(np.minimum(i0[:, a] + bits[a], shape[a] - 1) for a in range(d))]
            with np.errstate(invalid="ignore"):
                out += np.where(w > 0, w * v, 0.0)  # a zero weight never propagates a NaN corner
        if outside == "nan":
            out[beyond] = np.nan
        elif outside != "clamp":
            raise GlobscopeError(f"outside must be 'clamp' or 'nan', not {outside!r}")
        return out

    # -- records ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"origin": list(self.origin), "spacing": list(self.spacing), "shape": list(self.shape),
                "bounds": [list(b) for b in self.bounds]}

    @classmethod
    def from_dict(cls, d: dict):
        return cls(tuple(d["origin"]), tuple(d["spacing"]), tuple(d["shape"]))


__all__ = ["Grid", "MAX_DIM", "to_points", "to_field", "padded_shape", "strides", "point_ids", "grid_index"]
