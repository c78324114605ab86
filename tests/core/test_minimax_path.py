"""Minimax paths between minima: they pass the join saddle, and their height is the lowest level
at which the two minima connect (checked against scipy's graph components on the same edges)."""

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from globscope.errors import GlobscopeError
from globscope.grid import grid_index, point_ids
from globscope.topology import neighbor_offsets, persistence_pairs
from globscope.topology.paths import minimax_path


def _edges(shape):
    """Every edge of the grid triangulation, from the neighbour offsets (both directions)."""
    idx = grid_index(shape, np.arange(int(np.prod(shape))))
    out = []
    for o in neighbor_offsets(len(shape)):
        j = idx + o
        ok = np.all((j >= 0) & (j < np.asarray(shape)), axis=1)
        out.append(np.stack([point_ids(shape, idx[ok]), point_ids(shape, j[ok])], 1))
    return np.concatenate(out)


def test_the_path_between_two_wells_passes_the_saddle():
    x, y = np.linspace(-1.5, 1.5, 31), np.linspace(-1.0, 1.0, 21)  # x = 0 and y = 0 are vertices
    X, Y = np.meshgrid(x, y, indexing="ij")
    F = (X ** 2 - 1) ** 2 + Y ** 2  # minima (±1, 0), saddle (0, 0) of height 1
    left, right, saddle = (point_ids(F.shape, ij) for ij in ((5, 10), (25, 10), (15, 10)))
    path = minimax_path(F, left, right)
    assert path[0] == left and path[-1] == right
    assert saddle in path and F.ravel(order="F")[path].max() == 1.0
    steps = np.abs(np.diff(grid_index(F.shape, path), axis=0)).max(1)
    assert (steps == 1).all()  # consecutive vertices are neighbours
    pairs = persistence_pairs(F)
    assert pairs.death_vertex[pairs.is_finite].tolist() == [saddle]  # the join saddle of the two wells


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_path_height_is_the_connection_level(seed):
    rng = np.random.default_rng(seed)
    F = rng.random((12, 10))
    f = F.ravel(order="F")
    order = np.lexsort((np.arange(f.size), f))  # (value, vertex id)
    rank = np.empty(f.size, int)
    rank[order] = np.arange(f.size)
    e = _edges(F.shape)
    pairs = persistence_pairs(F)
    for m, s, old in zip(pairs.birth_vertex, pairs.death_vertex, pairs.elder_vertex):
        if old < 0:
            continue
        path = minimax_path(F, int(m), int(old))
        top = path[np.argmax(rank[path])]
        assert top == s  # the path's highest vertex is the pair's join saddle
        # independent: the first rank at which m and old share a component (scipy on the same edges)
        for level in range(rank[max(m, old, key=lambda v: rank[v])], f.size):
            keep = (rank[e[:, 0]] <= level) & (rank[e[:, 1]] <= level)
            g = coo_matrix((np.ones(keep.sum()), (e[keep, 0], e[keep, 1])), shape=(f.size, f.size))
            labels = connected_components(g, directed=False)[1]
            if labels[m] == labels[old]:
                break
        assert rank[top] == level


def test_bad_vertices_and_separating_masks_are_errors():
    F = np.arange(20.0).reshape(5, 4)
    with pytest.raises(GlobscopeError, match="not an unmasked vertex"):
        minimax_path(F, 0, 99)
    mask = np.zeros_like(F, bool)
    mask[2, :] = True
    with pytest.raises(GlobscopeError, match="not connected"):
        minimax_path(F, 0, 19, mask)
