"""Minimax paths between minima: they pass the join saddle, and their height is the lowest level
at which the two minima connect (checked against scipy's graph components on the same edges).
Valley paths (merge-tree arcs drawn on the field): along valley floors, never over a ridge."""

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from globscope.errors import GlobscopeError
from globscope.grid import grid_index, point_ids
from globscope.topology import neighbor_offsets, persistence_pairs
from globscope.topology.paths import minimax_path, valley_path


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


# -- valley paths: the merge-tree arcs drawn along the field ----------------------------------------
def test_a_valley_path_keeps_to_the_valley_floor():
    """From the saddle of two wells to a minimum the path runs along the floor (y = 0), where the
    straight line would be too; from a point up the wall it first descends to the floor."""
    x, y = np.linspace(-1.5, 1.5, 31), np.linspace(-1.0, 1.0, 21)
    X, Y = np.meshgrid(x, y, indexing="ij")
    F = (X ** 2 - 1) ** 2 + Y ** 2
    saddle, right = point_ids(F.shape, (15, 10)), point_ids(F.shape, (25, 10))
    path = valley_path(F, saddle, right, spacing=(0.1, 0.1))
    ij = grid_index(F.shape, path)
    assert path[0] == saddle and path[-1] == right and (ij[:, 1] == 10).all()
    assert (np.abs(np.diff(ij, axis=0)).max(1) == 1).all()  # consecutive vertices are neighbours


def test_a_valley_path_goes_round_a_ridge_not_over_it():
    """A wall between the two ends, open at one side: the path stays below its upper end (it
    goes round the wall) where the straight line would climb it."""
    F = np.zeros((21, 21))
    F[10, :16] = 5.0  # the wall x = 10, open for y >= 16
    F[2, 2], F[18, 2] = 1.0, -1.0  # the ends: (2, 2) above (18, 2), both below the wall
    a, b = point_ids(F.shape, (2, 2)), point_ids(F.shape, (18, 2))
    path = valley_path(F, a, b)
    assert F.ravel(order="F")[path].max() == 1.0 and grid_index(F.shape, path)[:, 1].max() >= 16


@pytest.mark.parametrize("seed", [0, 1])
def test_every_join_tree_arc_has_a_valley_path_below_its_up_node(seed):
    """Random 2-D and 3-D fields: each arc of the join tree is joined up node to down node, and the
    path never climbs above the up node (the saddle it joins at)."""
    from globscope.topology import join_tree, vertex_order

    rng = np.random.default_rng(seed)
    for shape in ((14, 11), (6, 5, 4)):
        F = rng.random(shape)
        rank = vertex_order(F)
        t = join_tree(F)
        for down, up in zip(t.node_vertex[t.arc_down], t.node_vertex[t.arc_up]):
            path = valley_path(F, int(up), int(down))
            assert path[0] == up and path[-1] == down
            assert rank[path].max() == rank[up]
            assert (np.abs(np.diff(grid_index(shape, path), axis=0)).max(1) == 1).all()
