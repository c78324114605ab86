"""Persistence pairs in dimension 0 (minimum–saddle) of the sublevel-set filtration."""

from __future__ import annotations

import numpy as np

from globscope.names import PairType

from .results import PersistencePairs
from .sweep import Sweep, sublevel_sweep

__all__ = ["persistence_pairs", "pairs_from_sweep"]


def _persistence(birth, death):
    with np.errstate(invalid="ignore", over="ignore"):
        p = death - birth
    bad = ~(np.isfinite(birth) & np.isfinite(death))
    p[bad] = np.inf
    return p


def pairs_from_sweep(sw: Sweep) -> PersistencePairs:
    """Assemble :class:`PersistencePairs` from a :class:`Sweep`."""
    f = sw.field.values
    rank = sw.field.rank
    order = np.argsort(rank[sw.pair_birth], kind="stable")
    pb = np.concatenate([sw.comp_min, sw.pair_birth[order]])
    pd = np.concatenate([sw.comp_max, sw.pair_death[order]])
    pe = np.concatenate([np.full(sw.comp_min.shape[0], -1, dtype=np.int64), sw.pair_elder[order]])
    n_ess = sw.comp_min.shape[0]
    is_finite = np.ones(pb.shape[0], dtype=np.bool_)
    is_finite[:n_ess] = False
    birth = f[pb]
    death = f[pd]
    return PersistencePairs(
        birth_vertex=pb,
        death_vertex=pd,
        birth=birth,
        death=death,
        persistence=_persistence(birth, death),
        is_finite=is_finite,
        pair_type=np.full(pb.shape[0], PairType.MINIMUM_SADDLE, dtype=np.int64),
        elder_vertex=pe,
    )


def persistence_pairs(F, mask=None) -> PersistencePairs:
    """Minimum–saddle persistence pairs of a grid field, with the essential pair.

    The sublevel-set filtration of the field on the grid triangulation
    (:mod:`globscope.topology.grid`), vertices ordered by (value, vertex id), non-finite values
    last. A minimum dies at the vertex where its component first meets a component with an
    older (lower) minimum (elder rule). The global minimum is paired with the global maximum and
    marked ``is_finite == False``, as TTK's persistence diagram does; when a mask splits the grid,
    each connected component gets such an essential pair.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]``, i along x; vertex id ``i + nx*(j + ny*(k + nz*l))``.
    mask : array_like of bool, same shape as F, optional
        Vertices to ignore.

    Returns
    -------
    PersistencePairs
    """
    return pairs_from_sweep(sublevel_sweep(F, mask))
