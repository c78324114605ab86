"""Analytic fields with known minima, non-finite values, masks, API details."""

from __future__ import annotations

import numpy as np
import pytest

from globscope.errors import Aborted
from globscope.grid import point_ids as vertex_ids
from globscope.grid import to_field as to_grid
from globscope.topology import (
    analyze,
    critical_points,
    join_tree,
    persistence_pairs,
    simplify,
    vertex_order,
)


def _wells(shape, centres, depths, width=0.08):
    axes = [np.linspace(0, 1, n) for n in shape]
    X = np.meshgrid(*axes, indexing="ij")
    F = 0.3 * sum((x - 0.5) ** 2 for x in X)
    for c, a in zip(centres, depths):
        r2 = sum((x - ci) ** 2 for x, ci in zip(X, c))
        F = F - a * np.exp(-r2 / (2 * width ** 2))
    return F


def _case(shape, vertices):
    """Well centres placed exactly on grid vertices (so the discrete minima are known)."""
    return shape, [tuple(i / (n - 1) for i, n in zip(v, shape)) for v in vertices]


CASES = {
    2: _case((41, 37), [(10, 11), (28, 25), (12, 27), (30, 9)]),
    3: _case((21, 19, 17), [(5, 5, 5), (14, 13, 10), (6, 13, 11)]),
    4: _case((11, 12, 10, 9), [(2, 3, 3, 2), (8, 8, 6, 6)]),
}


def _grid_min(shape, c):
    return tuple(int(round(ci * (n - 1))) for ci, n in zip(c, shape))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_gaussian_wells_minima_and_tree(d):
    shape, centres = CASES[d]
    depths = [1.0 + 0.2 * i for i in range(len(centres))]
    F = _wells(shape, centres, depths)
    res = analyze(F, persistence=0.05)
    expect = {int(vertex_ids(shape, _grid_min(shape, c))) for c in centres}
    cp = res.critical_points
    assert set(cp.vertices[cp.types == 0].tolist()) == expect
    assert res.n_basins == len(centres)
    tree = res.join_tree
    assert set(tree.node_vertex[tree.node_type == 0].tolist()) == expect
    assert tree.n_nodes == 2 * len(centres)  # leaves, n-1 saddles, root
    assert tree.node_type[-1] == 3 and tree.node_vertex[-1] == np.argmax(vertex_order(F))
    # the deepest well is the global minimum, paired with the global maximum
    p = res.pairs
    assert not p.is_finite[0]
    assert p.birth_vertex[0] == int(vertex_ids(shape, _grid_min(shape, centres[-1])))
    # each basin's segmentation contains its minimum and every vertex has an arc
    seg = to_grid(tree.segmentation, shape)
    assert seg.min() >= 0
    for c in centres:
        assert seg[_grid_min(shape, c)] == list(tree.node_vertex).index(
            int(vertex_ids(shape, _grid_min(shape, c))))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_noise_is_simplified_away(d):
    shape, centres = CASES[d]
    F = _wells(shape, centres, [1.0] * len(centres))
    F = F + 0.02 * np.random.default_rng(0).random(size=F.shape)
    before = persistence_pairs(F)
    assert len(before) > len(centres)
    s = simplify(F, 0.1)
    assert np.all(s.values >= F.ravel(order="F"))
    after = persistence_pairs(s.values.reshape(shape, order="F"))
    # simplified values tie; the strict Order array is what defines the simplified topology
    tree = join_tree(s.values.reshape(shape, order="F"))
    assert tree.n_leaves >= len(centres)
    res = analyze(F, 0.1)
    assert res.n_basins == len(centres)
    assert len(res.pairs_simplified) == len(centres)
    kept = before.select(~before.is_finite | (before.persistence > s.threshold))
    assert set(res.pairs_simplified.birth_vertex.tolist()) == set(kept.birth_vertex.tolist())
    assert len(after) >= len(centres)


def test_order_strict_and_compatible_with_values():
    rng = np.random.default_rng(3)
    F = np.round(rng.normal(size=(30, 20)), 1)
    s = simplify(F, 0.1)
    o = s.order
    assert np.array_equal(np.sort(o), np.arange(o.size))
    v = np.argsort(o)
    assert np.all(np.diff(s.values[v]) >= 0)
    # no minimum of the simplified order other than the surviving ones
    res = analyze(F, 0.1)
    cp = res.critical_points
    assert set(cp.vertices[cp.types == 0].tolist()) == set(res.pairs_simplified.birth_vertex.tolist())


def test_nonfinite_values_enter_last_and_are_counted():
    F = _wells((30, 30), [(0.3, 0.3), (0.7, 0.7)], [1.0, 1.0])
    F[0, 0] = np.nan
    F[29, 0] = np.inf
    F[0, 29] = -np.inf
    F[15, 15] = np.nan
    res = analyze(F, 0.05)
    assert res.n_nonfinite == 4
    order = vertex_order(F)
    ids = [int(vertex_ids(F.shape, ij)) for ij in [(0, 0), (29, 0), (0, 29), (15, 15)]]
    assert sorted(order[ids].tolist()) == list(range(F.size - 4, F.size))
    assert np.all(np.diff(order[sorted(ids)]) > 0)  # among themselves by vertex id
    # the NaN vertex is never a minimum; the last non-finite vertex is the global maximum
    p = res.pairs
    assert not np.isin(ids, p.birth_vertex).any()
    assert p.death_vertex[0] == max(ids) and p.persistence[0] == np.inf
    assert res.n_basins == 2
    # values are reported, never replaced
    assert np.isnan(res.simplification.values[ids[0]])
    assert np.isneginf(res.simplification.values[ids[2]])


def test_mask_splits_the_domain():
    F = _wells((40, 20), [(0.2, 0.5), (0.8, 0.5)], [1.0, 0.5])
    mask = np.zeros(F.shape, dtype=bool)
    mask[20, :] = True
    res = analyze(F, 0.05, mask=mask)
    p = res.pairs
    assert (~p.is_finite).sum() == 2  # one essential pair per component
    tree = res.join_tree
    assert (tree.node_type == 3).sum() == 2
    seg = to_grid(tree.segmentation, F.shape)
    assert np.all(seg[20, :] == -1) and np.all(seg[mask == 0] >= 0)
    assert np.all(to_grid(critical_points(F, mask).critical_type, F.shape)[20, :] == -1)
    assert np.all(to_grid(res.simplification.order, F.shape)[20, :] == -1)
    # masked vertices take no part: changing them changes nothing
    G = F.copy()
    G[20, :] = -100.0
    res2 = analyze(G, 0.05, mask=mask)
    assert np.array_equal(res2.join_tree.segmentation, tree.segmentation)
    # without the mask the two wells merge
    assert analyze(F, 0.05).join_tree.n_leaves == 2
    assert analyze(F, 0.05).pairs.is_finite.sum() >= 1


def test_one_dimensional_field():
    F = np.array([3.0, 1.0, 2.0, 0.0, 4.0, 0.5, 5.0])
    p = persistence_pairs(F)
    assert {(int(b), int(d)) for b, d, f in zip(p.birth_vertex, p.death_vertex, p.is_finite) if f} \
        == {(1, 2), (5, 4)}
    assert (p.birth_vertex[0], p.death_vertex[0]) == (3, 6)
    tree = join_tree(F)
    assert tree.n_leaves == 3 and tree.node_vertex[-1] == 6
    # a maximum that is also the last join saddle
    t2 = join_tree(np.array([0.0, 1.0, 0.5]))
    assert t2.node_vertex.tolist() == [0, 2, 1] and t2.n_arcs == 2
    assert t2.segmentation.min() >= 0


def test_field_order_and_vertex_ids():
    F = np.arange(24, dtype=float).reshape(2, 3, 4)  # F[i, j, k]
    o = vertex_order(F)
    assert np.array_equal(o, np.argsort(np.argsort(F.ravel(order="F"))))
    assert vertex_ids(F.shape, (1, 2, 3)) == 1 + 2 * (2 + 3 * 3)


def test_callbacks_and_bad_input():
    F = _wells((20, 20), [(0.3, 0.3)], [1.0])
    seen = []
    analyze(F, progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Aborted):
        analyze(F, should_abort=lambda: True)
    with pytest.raises(ValueError):
        analyze(np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ValueError):
        analyze(F, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError):
        simplify(F, -1.0)


def test_absolute_and_relative_thresholds_agree():
    F = _wells((30, 30), [(0.3, 0.3), (0.7, 0.7)], [1.0, 0.9])
    F = F + 1e-2 * np.random.default_rng(1).normal(size=F.shape)
    rng_ = F.max() - F.min()
    a = simplify(F, 0.05)
    b = simplify(F, 0.05 * rng_, absolute=True)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.order, b.order)
    none = simplify(F, 0.0)
    assert none.n_changed == 0 and np.array_equal(none.order, vertex_order(F))
