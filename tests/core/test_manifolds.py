"""Manifolds: the scikit-learn contract, save/load, determinism, and errors checked against
independent truth (an SVD recomputed by hand, a known non-linear 2-D manifold)."""

import numpy as np
import pytest
import torch

from globscope.compare import compare, per_model_error
from globscope.errors import GlobscopeError
from globscope.manifolds import METHODS, load_manifold, make_manifold

FAST = {"autoencoder": {"epochs": 300, "patience": 100}}


def curved_sheet(n=240, D=40, seed=0):
    """Points on a smooth non-linear 2-D sheet in R^D: W = g(z), z uniform in [-1, 1]^2."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, size=(n, 2))
    A, B = rng.normal(size=(2, D)), rng.normal(size=(3, D))
    feats = np.stack([z[:, 0] ** 2, np.sin(2 * z[:, 1]), z[:, 0] * z[:, 1]], 1)
    return (z @ A + feats @ B).astype(np.float32)


@pytest.mark.parametrize("method", list(METHODS))
def test_contract_shapes_params_and_save_load(method, tmp_path):
    W = curved_sheet(n=60, D=30)
    man = make_manifold(method, 3, seed=1, **FAST.get(method, {}))
    assert man.get_params()["dim"] == 3 and man.get_params()["seed"] == 1
    Z = man.fit_transform(W)
    assert Z.shape == (60, 3)
    R = man.inverse_transform(Z)
    assert R.shape == W.shape and R.dtype == np.float32
    man.save(tmp_path / "m.pt")
    back = load_manifold(tmp_path / "m.pt")
    assert type(back) is type(man) and back.get_params() == man.get_params()
    np.testing.assert_allclose(back.transform(W), Z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(back.inverse_transform(Z), R, rtol=1e-5, atol=1e-6)


def test_pca_equals_a_hand_computed_svd_projection():
    W = curved_sheet(n=80, D=25, seed=2)
    man = make_manifold("pca", 2).fit(W)
    Wd = W.astype(np.float64)
    mean = Wd.mean(0)
    _, _, vt = np.linalg.svd(Wd - mean, full_matrices=False)
    ref = mean + (Wd - mean) @ vt[:2].T @ vt[:2]
    np.testing.assert_allclose(man.inverse_transform(man.transform(W)), ref, atol=1e-4)
    assert man.reconstruction_mse(W) == pytest.approx(np.mean((ref - Wd) ** 2), rel=1e-3)


def test_autoencoder_recovers_a_curved_sheet_that_pca_cannot():
    W = curved_sheet(n=120)
    ae = make_manifold("autoencoder", 2, epochs=600, patience=200, seed=0).fit(W)
    pca = make_manifold("pca", 2).fit(W)
    assert ae.reconstruction_mse(W) < 0.2 * pca.reconstruction_mse(W)
    assert ae.best_epoch_ < ae.n_epochs_ <= 600


def test_autoencoder_is_deterministic_and_paper_shaped():
    W = curved_sheet(n=50, D=20)
    a = make_manifold("autoencoder", 4, epochs=50, seed=5).fit(W)
    b = make_manifold("autoencoder", 4, epochs=50, seed=5).fit(W)
    for (k, x), (_, y) in zip(a.decoder_.state_dict().items(), b.decoder_.state_dict().items()):
        assert torch.equal(x, y), k
    widths = [m.out_features for m in a.encoder_ if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 16, 4]
    assert [m.out_features for m in a.decoder_ if isinstance(m, torch.nn.Linear)] == [16, 64, 128, 20]
    # the torch decoder used on devices equals inverse_transform
    z = np.random.default_rng(0).normal(size=(7, 4))
    np.testing.assert_allclose(a.decoder_torch()(torch.tensor(z, dtype=torch.float32)).detach().numpy(),
                               a.inverse_transform(z), rtol=1e-5, atol=1e-6)


def test_compare_scores_every_method_the_same_way(digits_weights):
    rows = compare(digits_weights, 2, methods=["pca", "kernel-pca"])
    for r in rows:
        man = make_manifold(r["method"], 2).fit(digits_weights)
        assert r["mse"] == pytest.approx(float(np.mean(per_model_error(man, digits_weights))), rel=1e-6)


def test_errors_are_clear(tmp_path):
    with pytest.raises(GlobscopeError, match="latent dimension must be one of"):
        make_manifold("pca", 5)
    with pytest.raises(GlobscopeError, match="unknown manifold method 'tsne'"):
        make_manifold("tsne", 2)
    with pytest.raises(GlobscopeError, match="not fitted yet"):
        make_manifold("pca", 2).transform(np.zeros((3, 4)))
    man = make_manifold("pca", 2).fit(curved_sheet(n=20, D=6))
    with pytest.raises(GlobscopeError, match="D=7, the manifold was fitted on D=6"):
        man.transform(np.zeros((2, 7)))
    with pytest.raises(GlobscopeError, match="need at least 4 models"):
        make_manifold("pca", 2).fit(np.zeros((3, 6)))
    man.save(tmp_path / "ok.pt")
    blob = torch.load(tmp_path / "ok.pt", weights_only=True)
    del blob["state_"]
    torch.save(blob, tmp_path / "damaged.pt")
    with pytest.raises(GlobscopeError, match="damaged.pt: damaged manifold file"):
        load_manifold(tmp_path / "damaged.pt")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(GlobscopeError, match="bad.pt: not a readable Globscope manifold"):
        load_manifold(tmp_path / "bad.pt")


def test_device_helpers_leave_the_fitted_manifold_where_it_was():
    W = curved_sheet(n=30, D=12)
    ae = make_manifold("autoencoder", 2, epochs=20, seed=0).fit(W)
    before = ae.inverse_transform(np.zeros((1, 2)))
    ae.decoder_torch(torch.device("meta"))
    ae.affine_head(torch.device("meta"))
    assert next(ae.decoder_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(ae.inverse_transform(np.zeros((1, 2))), before)
