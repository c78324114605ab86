"""The latent grid: a regular grid over the bounding box of the encoded model points plus a margin.

Grid vertices are numbered as VTK numbers them, x fastest: the vertex with multi-index
``(i, j, k, l)`` has point id ``i + nx*(j + ny*(k + nz*l))``. A field over the grid is a float64
array indexed ``F[i, j(, k, l)]`` (``F.reshape(-1, order="F")`` is the field in point-id order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from globscope.errors import GlobscopeError

DIMS = (2, 3, 4)


@dataclass(frozen=True)
class LatentGrid:
    """A regular grid in latent space.

    Parameters
    ----------
    origin : tuple of float, length d
        Coordinates of vertex (0, …, 0).
    spacing : tuple of float, length d
        Distance between neighbouring vertices along each axis.
    shape : tuple of int, length d
        Vertices per axis (nx, ny[, nz[, nw]]), each at least 2.
    """

    origin: tuple
    spacing: tuple
    shape: tuple

    def __post_init__(self):
        d = len(self.shape)
        if d not in DIMS:
            raise GlobscopeError(f"latent grid: dimension must be one of {DIMS}, got {d}")
        if len(self.origin) != d or len(self.spacing) != d:
            raise GlobscopeError("latent grid: origin, spacing and shape must have the same length")
        if any(int(n) < 2 for n in self.shape):
            raise GlobscopeError(f"latent grid: at least 2 vertices per axis, got {tuple(self.shape)}")
        if not all(np.isfinite(self.spacing)) or any(s <= 0 for s in self.spacing):
            raise GlobscopeError(f"latent grid: spacing must be positive and finite, got {tuple(self.spacing)}")
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))

    @classmethod
    def around(cls, Z, resolution, margin: float = 0.1) -> LatentGrid:
        """The grid over the bounding box of ``Z`` widened by ``margin`` on every side.

        Parameters
        ----------
        Z : array of shape (N, d)
            Encoded model points.
        resolution : int or sequence of int
            Vertices per axis (one value for all axes, or d values).
        margin : float
            Fraction of each axis' extent added on both sides (0.1 widens the box by 20 %).
            An axis of zero extent gets a half-width of ``max(margin, 0.5)`` latent units.
        """
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[0] < 1:
            raise GlobscopeError(f"latent grid: model points must have shape (N, d), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise GlobscopeError("latent grid: model points hold NaN or Inf")
        if margin < 0:
            raise GlobscopeError(f"latent grid: margin must be >= 0, got {margin}")
        d = Z.shape[1]
        res = np.broadcast_to(np.atleast_1d(np.asarray(resolution, dtype=int)), (d,)) \
            if np.size(resolution) in (1, d) else None
        if res is None:
            raise GlobscopeError(f"latent grid: resolution needs 1 or {d} values, got {np.size(resolution)}")
        lo, hi = Z.min(0), Z.max(0)
        ext = hi - lo
        pad = np.where(ext > 0, margin * ext, max(margin, 0.5))
        lo, hi = lo - pad, hi + pad
        return cls(tuple(lo), tuple((hi - lo) / (res - 1)), tuple(res))

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

    def points(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Coordinates of the vertices with point ids ``start … stop-1`` (x fastest).

        Returns
        -------
        ndarray of shape (stop - start, d), float64
        """
        stop = self.n_points if stop is None else min(stop, self.n_points)
        ids = np.arange(start, stop)
        idx = np.unravel_index(ids, self.shape, order="F")
        return np.stack([o + s * i for o, s, i in zip(self.origin, self.spacing, idx)], axis=1)

    def to_field(self, values: np.ndarray) -> np.ndarray:
        """A field ``F[i, j, …]`` of shape ``self.shape`` from values in point-id order, shape (n_points,)."""
        return np.asarray(values).reshape(self.shape, order="F")

    def interpolate(self, F: np.ndarray, Zq) -> np.ndarray:
        """Multilinear interpolation of the field ``F`` (shape ``self.shape``) at points ``Zq`` (M, d).

        Points outside the grid are clamped to it. A NaN or Inf vertex makes the cells around it
        NaN/Inf: non-finite values are never hidden.
        """
        Zq = np.atleast_2d(np.asarray(Zq, dtype=np.float64))
        F = np.asarray(F, dtype=np.float64)
        d = self.dim
        u = (Zq - np.asarray(self.origin)) / np.asarray(self.spacing)
        shape = np.asarray(self.shape)
        u = np.clip(u, 0, shape - 1)
        i0 = np.minimum(np.floor(u).astype(int), shape - 2)
        t = u - i0
        out = np.zeros(len(Zq))
        for corner in range(2 ** d):
            bits = [(corner >> a) & 1 for a in range(d)]
            w = np.ones(len(Zq))
            for a, b in enumerate(bits):
                w = w * (t[:, a] if b else 1 - t[:, a])
            v = F[tuple(i0[:, a] + bits[a] for a in range(d))]
            with np.errstate(invalid="ignore"):
                out += np.where(w > 0, w * v, 0.0)  # a zero weight never propagates a NaN corner
        return out

    def nearest_vertex(self, Zq) -> tuple[np.ndarray, np.ndarray]:
        """The grid vertex nearest to each query point.

        Parameters
        ----------
        Zq : array of shape (M, d)

        Returns
        -------
        vertex_id : ndarray of int64, shape (M,)
            VTK point id (x fastest) of the nearest vertex, clamped onto the grid.
        inside : ndarray of bool, shape (M,)
            Whether the point lies within half a cell of the grid.
        """
        Zq = np.atleast_2d(np.asarray(Zq, dtype=np.float64))
        idx = np.rint((Zq - np.asarray(self.origin)) / np.asarray(self.spacing)).astype(np.int64)
        shape = np.asarray(self.shape)
        inside = np.all((idx >= 0) & (idx < shape), axis=1)
        idx = np.clip(idx, 0, shape - 1)
        return np.ravel_multi_index(tuple(idx.T), self.shape, order="F"), inside

    def to_dict(self) -> dict:
        return {"origin": list(self.origin), "spacing": list(self.spacing), "shape": list(self.shape),
                "bounds": [list(b) for b in self.bounds]}

    @classmethod
    def from_dict(cls, d: dict) -> LatentGrid:
        return cls(tuple(d["origin"]), tuple(d["spacing"]), tuple(d["shape"]))


def nearest_model(Z, points) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to its nearest model point, and that model's index.

    Parameters
    ----------
    Z : array of shape (N, d)
        Encoded model points.
    points : array of shape (M, d)

    Returns
    -------
    distance : ndarray of shape (M,), float64
    index : ndarray of shape (M,), int64
    """
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(np.asarray(Z, dtype=np.float64)).query(np.asarray(points, dtype=np.float64))
    return np.asarray(dist, dtype=np.float64), np.asarray(idx, dtype=np.int64)


__all__ = ["LatentGrid", "nearest_model", "DIMS"]
