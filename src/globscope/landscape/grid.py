"""The latent grid: a regular grid (:class:`globscope.grid.Grid`) over the bounding box of the
encoded model points plus a margin, and the nearest model of each grid point."""

from __future__ import annotations

import numpy as np

from globscope.errors import GlobscopeError
from globscope.grid import Grid
from globscope.names import LATENT_DIMS


class LatentGrid(Grid):
    """A regular grid in latent space: 2 to 4 axes of at least 2 vertices each.

    The geometry (point ids, coordinates, interpolation, nearest vertex) is :class:`globscope.grid.Grid`'s;
    this class adds the latent grid's rules and :meth:`around`, the box of the encoded models.
    """

    def __post_init__(self):
        d = len(self.shape)
        if d not in LATENT_DIMS:
            raise GlobscopeError(f"latent grid: dimension must be one of {LATENT_DIMS}, got {d}")
        if any(int(n) < 2 for n in self.shape):
            raise GlobscopeError(f"latent grid: at least 2 vertices per axis, got {tuple(self.shape)}")
        super().__post_init__()

    @classmethod
    def around(cls, Z, resolution, margin: float) -> LatentGrid:
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
        if not (np.isfinite(margin) and margin >= 0):
            raise GlobscopeError(f"latent grid: margin must be a finite fraction >= 0 of the models' box, got {margin}")
        d = Z.shape[1]
        if np.size(resolution) not in (1, d):
            raise GlobscopeError(f"latent grid: resolution needs 1 or {d} values, got {np.size(resolution)}")
        res = np.broadcast_to(np.atleast_1d(np.asarray(resolution, dtype=int)), (d,))
        lo, hi = Z.min(0), Z.max(0)
        with np.errstate(over="ignore", invalid="ignore"):
            ext = hi - lo
            pad = np.where(ext > 0, margin * ext, max(margin, 0.5))
            lo, hi = lo - pad, hi + pad
            spacing = (hi - lo) / (res - 1)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and np.isfinite(spacing).all()):
            raise GlobscopeError(f"latent grid: margin {margin} widens the models' box {tuple(Z.min(0))} .. "
                                 f"{tuple(Z.max(0))} beyond the floating-point range")
        return cls(tuple(lo), tuple(spacing), tuple(res))


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


__all__ = ["LatentGrid", "nearest_model"]
