"""Dimension-0 persistence equals gudhi's on the same triangulation (lower-star filtration)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from globscope.topology import neighbor_offsets, persistence_pairs, prepare_field
from globscope.topology.grid import kuhn_simplices, link_adjacency

gudhi = pytest.importorskip("gudhi")


def _gudhi_pairs(F):
    """(birth vertex, death vertex or -1) of gudhi's dimension-0 pairs, lower-star on our order."""
    fi = prepare_field(F)
    rank = fi.rank.astype(float)
    st = gudhi.SimplexTree()
    for s in kuhn_simplices(F.shape):
        st.insert(s.tolist())
    for simplex, _ in list(st.get_simplices()):  # lower-star filtration
        st.assign_filtration(simplex, float(rank[simplex].max()))
    st.make_filtration_non_decreasing()
    st.compute_persistence(persistence_dim_max=False)
    out = set()
    for birth, death in st.persistence_pairs():
        if len(birth) != 1:
            continue
        b = int(birth[0])
        d = int(max(death, key=lambda v: rank[v])) if death else -1
        if d >= 0 and rank[d] == rank[b]:
            continue
        out.add((b, d))
    return out


def _ours(F):
    p = persistence_pairs(F)
    return {(int(b), int(d) if f else -1)
            for b, d, f in zip(p.birth_vertex, p.death_vertex, p.is_finite)}


@pytest.mark.parametrize("shape", [(23, 17), (9, 8, 7), (5, 4, 6, 4), (40,)])
@pytest.mark.parametrize("seed", [0, 1])
def test_dimension0_diagram_equals_gudhi(shape, seed):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=shape)
    assert _ours(F) == _gudhi_pairs(F)


@pytest.mark.parametrize("shape", [(12, 10), (6, 5, 5), (4, 4, 3, 3)])
def test_dimension0_diagram_with_ties_equals_gudhi(shape):
    rng = np.random.default_rng(7)
    F = np.round(rng.normal(size=shape), 1)  # many exact ties: order by (value, vertex id)
    assert _ours(F) == _gudhi_pairs(F)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_triangulation_edges_are_the_neighbour_offsets(d):
    shape = (3,) * d
    simplices = kuhn_simplices(shape)
    edges = set()
    for s in simplices:
        for a, b in itertools.combinations(s.tolist(), 2):
            edges.add((min(a, b), max(a, b)))
    idx = np.stack(np.unravel_index(np.arange(3 ** d), shape, order="F"), axis=-1)
    offs = {tuple(o) for o in neighbor_offsets(d)}
    expect = {(a, b) for a in range(3 ** d) for b in range(a + 1, 3 ** d)
              if tuple(idx[b] - idx[a]) in offs}
    assert edges == expect
    assert len(neighbor_offsets(d)) == 2 * (2 ** d - 1)
    # the link of the centre vertex: neighbour pairs adjacent <=> they span a triangle with it
    centre = int(np.ravel_multi_index((1,) * d, shape, order="F"))
    tri = set()
    for s in simplices:
        if centre in s:
            for a, b in itertools.combinations([v for v in s.tolist() if v != centre], 2):
                tri.add((min(a, b), max(a, b)))
    nb = [int(np.ravel_multi_index(tuple(np.array((1,) * d) + o), shape, order="F"))
          for o in neighbor_offsets(d)]
    adj = link_adjacency(d)
    got = {(min(nb[i], nb[j]), max(nb[i], nb[j])) for i in range(len(nb)) for j in range(len(nb))
           if adj[i, j]}
    assert got == tri


def test_ttk_offsets_2d_3d():
    assert {tuple(o) for o in neighbor_offsets(2)} == {
        (1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)}
    o3 = {(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -1, 0), (1, 0, -1), (0, 1, 1), (1, -1, -1)}
    assert {tuple(o) for o in neighbor_offsets(3)} == o3 | {tuple(-np.array(o)) for o in o3}
    # every 3-D slice of the 4-D triangulation is TTK's 3-D triangulation
    o4 = {tuple(o) for o in neighbor_offsets(4)}
    assert {o[:3] for o in o4 if o[3] == 0} == {tuple(o) for o in neighbor_offsets(3)}
