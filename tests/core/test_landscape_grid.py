"""The latent grid: box and margin, VTK point order, multilinear interpolation, nearest model."""

import numpy as np
import pytest

from globscope.errors import GlobscopeError
from globscope.landscape.grid import LatentGrid, nearest_model


def test_around_box_and_margin():
    Z = np.array([[0.0, 1.0], [2.0, 5.0], [1.0, 3.0]])
    g = LatentGrid.around(Z, 11, margin=0.1)
    assert g.shape == (11, 11)
    np.testing.assert_allclose(g.bounds, [(-0.2, 2.2), (0.6, 5.4)])
    g = LatentGrid.around(Z, (5, 9), margin=0.0)
    assert g.shape == (5, 9)
    np.testing.assert_allclose(g.spacing, [0.5, 0.5])
    # a flat axis still gets a box
    g = LatentGrid.around(np.array([[0.0, 1.0], [2.0, 1.0]]), 3, margin=0.1)
    np.testing.assert_allclose(g.bounds[1], (0.5, 1.5))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_point_ids_are_x_fastest(d):
    rng = np.random.default_rng(d)
    g = LatentGrid.around(rng.normal(size=(5, d)), [3, 4, 5, 2][:d], margin=0.2)
    P = g.points()
    assert P.shape == (g.n_points, d)
    axes = g.axes()
    for pid in [0, 1, 7, g.n_points - 1]:
        # point id i + nx*(j + ny*(k + nz*l)), written out by hand
        rest, idx = pid, []
        for n in g.shape:
            idx.append(rest % n)
            rest //= n
        np.testing.assert_allclose(P[pid], [axes[a][idx[a]] for a in range(d)])
    # chunked points equal the whole
    np.testing.assert_array_equal(g.points(5, 11), P[5:11])
    # to_field puts point pid at F[i, j, ...]
    F = g.to_field(np.arange(g.n_points))
    assert F[(1,) + (0,) * (d - 1)] == 1 and F[(0, 1) + (0,) * (d - 2)] == g.shape[0]


@pytest.mark.parametrize("d", [2, 3, 4])
def test_interpolation_exact_on_multilinear_functions(d):
    rng = np.random.default_rng(10 + d)
    g = LatentGrid.around(rng.normal(size=(6, d)), 5, margin=0.1)
    c = rng.normal(size=d)

    def f(P):  # multilinear: affine + product of two coordinates
        return P @ c + 0.5 * P[:, 0] * P[:, 1] + 1.0

    F = g.to_field(f(g.points()))
    q = np.array([lo + (hi - lo) * rng.random(20) for lo, hi in g.bounds]).T
    np.testing.assert_allclose(g.interpolate(F, q), f(q), rtol=1e-10, atol=1e-10)
    # at the vertices, the vertex values
    np.testing.assert_allclose(g.interpolate(F, g.points()), F.reshape(-1, order="F"), atol=1e-12)


def test_interpolation_keeps_non_finite_cells_only():
    g = LatentGrid((0.0, 0.0), (1.0, 1.0), (3, 3))
    F = np.zeros((3, 3))
    F[2, 2] = np.nan
    out = g.interpolate(F, np.array([[0.5, 0.5], [1.5, 1.5], [2.0, 1.0]]))
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 0.0


def test_nearest_model_matches_brute_force():
    rng = np.random.default_rng(3)
    Z, P = rng.normal(size=(17, 3)), rng.normal(size=(50, 3))
    dist, idx = nearest_model(Z, P)
    D = np.linalg.norm(P[:, None] - Z[None], axis=2)
    np.testing.assert_array_equal(idx, D.argmin(1))
    np.testing.assert_allclose(dist, D.min(1))


def test_bad_grids_name_the_problem():
    with pytest.raises(GlobscopeError, match="dimension"):
        LatentGrid((0.0,), (1.0,), (4,))
    with pytest.raises(GlobscopeError, match="at least 2"):
        LatentGrid((0.0, 0.0), (1.0, 1.0), (1, 4))
    with pytest.raises(GlobscopeError, match="resolution"):
        LatentGrid.around(np.zeros((3, 2)), (4, 4, 4), 0.1)
    with pytest.raises(GlobscopeError, match="NaN"):
        LatentGrid.around(np.array([[0.0, np.nan]]), 4, 0.1)
