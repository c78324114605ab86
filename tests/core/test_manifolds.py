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


def test_default_recipe_fits_a_curved_sheet_sooner_than_the_paper_recipe():
    """Same epoch budget: the default schedule reaches a lower error than the paper's constant lr,
    and well below PCA's on a 2-D non-linear sheet (the truth: the data have 2 degrees of freedom)."""
    from globscope.manifolds import AutoencoderManifold

    W = curved_sheet(n=120)
    new = make_manifold("autoencoder", 2, epochs=300, patience=300, seed=0).fit(W)
    old = make_manifold("autoencoder", 2, seed=0, **{**AutoencoderManifold.PAPER_RECIPE, "epochs": 300}).fit(W)
    pca = make_manifold("pca", 2).fit(W)
    assert new.reconstruction_mse(W) < 0.1 * pca.reconstruction_mse(W)
    assert new.reconstruction_mse(W) < old.reconstruction_mse(W)


def test_learning_rate_schedule_matches_its_formula():
    ae = make_manifold("autoencoder", 2, epochs=200, lr=0.01)
    warm = 10  # 5 % of 200
    for e in [0, 4, 9]:
        assert ae.lr_at(e) == pytest.approx(0.01 * (e + 1) / warm)
    assert ae.lr_at(warm) == pytest.approx(0.01)
    assert ae.lr_at(warm + 95) == pytest.approx(0.005)  # halfway through the decay: cos(pi/2) = 0
    assert ae.lr_at(199) == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 189 / 190)))
    assert [ae.lr_at(e) for e in range(warm, 200)] == sorted((ae.lr_at(e) for e in range(warm, 200)), reverse=True)
    assert make_manifold("autoencoder", 2, schedule="constant", lr=0.01).lr_at(123) == 0.01
    with pytest.raises(GlobscopeError, match="schedule must be one of"):
        make_manifold("autoencoder", 2, schedule="step")


def test_fit_applies_the_schedule(monkeypatch):
    """The optimiser's lr at each epoch is ``lr_at(epoch)``."""
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    ae = make_manifold("autoencoder", 2, epochs=40, patience=40, seed=0).fit(curved_sheet(n=30, D=12))
    assert seen == [ae.lr_at(e) for e in range(40)]


def test_autoencoder_is_deterministic_and_paper_shaped():
    W = curved_sheet(n=50, D=20)
    a = make_manifold("autoencoder", 4, epochs=50, seed=5).fit(W)
    b = make_manifold("autoencoder", 4, epochs=50, seed=5).fit(W)
    for (k, x), (_, y) in zip(a.decoder_.state_dict().items(), b.decoder_.state_dict().items()):
        assert torch.equal(x, y), k
    widths = [m.out_features for m in a.encoder_ if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 16, 4]
    assert [m.out_features for m in a.decoder_ if isinstance(m, torch.nn.Linear)] == [16, 64, 128, 20]
    np.testing.assert_array_equal(a.history_, b.history_)
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


# -- persistence: fitted state restored, not refitted ------------------------------------------------

BASELINES = ["pca", "kernel-pca", "umap"]
BASELINE_PARAMS = {"umap": {"n_neighbors": 10}}  # n_neighbors < N = 40


def random_models(n=40, D=50, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted_baselines():
    """Every baseline at every latent dimension, fitted once on 40 random models of D = 50."""
    from globscope.names import LATENT_DIMS as DIMS

    W = random_models()
    return {(m, d): make_manifold(m, d, **BASELINE_PARAMS.get(m, {})).fit(W) for m in BASELINES for d in DIMS}


def _forbid_fitting(monkeypatch):
    """Make every way of fitting a baseline's estimator raise, so loading must restore, not refit."""
    import pynndescent
    import umap
    from sklearn.decomposition import PCA, KernelPCA

    def refit(*a, **k):
        raise AssertionError("an estimator was fitted while loading a manifold")

    for cls in (PCA, KernelPCA, umap.UMAP):
        monkeypatch.setattr(cls, "fit", refit)
        monkeypatch.setattr(cls, "fit_transform", refit)
    monkeypatch.setattr(pynndescent.NNDescent, "__init__", refit)


def _assert_same_maps(man, back, W):
    """transform and inverse_transform agree exactly, on training and on new models and latent points."""
    W_new = random_models(n=7, seed=5)
    Z = np.random.default_rng(6).normal(size=(6, man.dim))
    np.testing.assert_array_equal(back.transform(W), man.transform(W))
    np.testing.assert_array_equal(back.transform(W_new), man.transform(W_new))
    np.testing.assert_array_equal(back.inverse_transform(Z), man.inverse_transform(Z))


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("method", BASELINES)
def test_baselines_load_bit_for_bit_without_refitting(method, dim, fitted_baselines, tmp_path, monkeypatch):
    man = fitted_baselines[method, dim]
    man.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["version"] == 2 and "X_fit_" not in blob["state_"]
    _forbid_fitting(monkeypatch)
    back = load_manifold(tmp_path / "m.pt")
    assert type(back.estimator_) is type(man.estimator_)
    _assert_same_maps(man, back, random_models())


@pytest.mark.slow
def test_umap_search_index_is_restored_not_rebuilt(tmp_path, monkeypatch):
    """The pynndescent index UMAP queries for N >= 4096 (forced here on 40 models) comes back from its
    arrays: building one (NNDescent.__init__) is forbidden while loading."""
    from globscope.manifolds import UMAPManifold

    make = UMAPManifold._make_estimator

    def approximate(self, n_samples):
        est = make(self, n_samples)
        est.force_approximation_algorithm = True
        return est

    monkeypatch.setattr(UMAPManifold, "_make_estimator", approximate)
    W = random_models()
    man = make_manifold("umap", 2, n_neighbors=10).fit(W)
    assert man.estimator_._small_data is False
    man.save(tmp_path / "m.pt")
    _forbid_fitting(monkeypatch)
    back = load_manifold(tmp_path / "m.pt")
    assert type(back.estimator_._knn_search_index).__name__ == "NNDescent"
    _assert_same_maps(man, back, W)


def test_saving_refuses_what_only_pickle_could_store(tmp_path):
    man = make_manifold("pca", 2).fit(random_models())
    man.estimator_.custom_ = object()
    with pytest.raises(GlobscopeError, match=r"cannot save this pca manifold: estimator.custom_: a builtins.object"):
        man.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_a_baseline_from_other_library_versions_loads_with_a_warning(tmp_path, caplog):
    man = make_manifold("kernel-pca", 2).fit(random_models())
    man.save(tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(blob["state_"]["libraries"]) == {"scikit-learn"}
    blob["state_"]["libraries"]["scikit-learn"] = "0.1"
    torch.save(blob, tmp_path / "old.pt")
    back = load_manifold(tmp_path / "old.pt")
    assert "saved with scikit-learn 0.1" in caplog.text
    np.testing.assert_array_equal(back.inverse_transform(np.zeros((1, 2))), man.inverse_transform(np.zeros((1, 2))))


def test_read_manifold_info_reads_without_building_the_model(tmp_path, monkeypatch):
    from globscope.manifolds import AutoencoderManifold, ManifoldInfo, read_manifold_info
    from globscope.manifolds import autoencoder as ae_module

    man = make_manifold("autoencoder", 3, epochs=5, seed=2).fit(random_models(D=12))
    man.meta_ = {"task": "digits-mlp", "checkpoint_set": "/zoo"}
    man.save(tmp_path / "ae.pt")
    params = man.get_params()

    def build(*a, **k):
        raise AssertionError("the model was built")

    monkeypatch.setattr(ae_module, "build_mlp", build)
    monkeypatch.setattr(AutoencoderManifold, "__init__", build)
    info = read_manifold_info(tmp_path / "ae.pt")
    assert isinstance(info, ManifoldInfo)
    assert (info.path, info.method, info.dim, info.n_features_in_, info.version) == (tmp_path / "ae.pt",
                                                                                       "autoencoder", 3, 12, 2)
    assert info.params == params and info.meta == man.meta_
    assert info.fit_seconds == man.fit_seconds_ > 0
    with pytest.raises(AttributeError):
        info.dim = 2  # frozen


def test_manifold_file_errors_name_the_file(tmp_path):
    from globscope.manifolds import read_manifold_info

    man = make_manifold("pca", 2).fit(random_models())
    man.save(tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    blob = torch.load(tmp_path / "ok.pt", weights_only=True)
    torch.save({**blob, "version": 3}, tmp_path / "future.pt")
    cases = {"missing.pt": "missing.pt: manifold file not found",
             "junk.pt": "junk.pt: not a readable Globscope manifold",
             "truncated.pt": "truncated.pt: not a readable Globscope manifold",
             "other.pt": "other.pt: not a Globscope manifold file",
             "future.pt": "future.pt: manifold file format version 3 is not one this Globscope reads"}
    for name, message in cases.items():
        for read in (read_manifold_info, load_manifold):
            with pytest.raises(GlobscopeError, match=message):
                read(tmp_path / name)


def test_version_1_files(tmp_path):
    """Version 1 autoencoders load as before; version 1 baselines (training weights only) are refused."""
    from globscope.manifolds import read_manifold_info

    W = random_models(D=12)
    ae = make_manifold("autoencoder", 2, epochs=5).fit(W)
    ae.save(tmp_path / "ae.pt")
    blob = torch.load(tmp_path / "ae.pt", weights_only=True)
    torch.save({**blob, "version": 1}, tmp_path / "ae1.pt")
    np.testing.assert_array_equal(load_manifold(tmp_path / "ae1.pt").transform(W), ae.transform(W))
    assert read_manifold_info(tmp_path / "ae1.pt").version == 1

    # what version 1 wrote for a baseline: its standardised training weights, refitted on load
    pca = make_manifold("pca", 3, seed=4).fit(W)
    v1 = {"format": "globscope-manifold", "version": 1, "method": "pca", "params": pca.get_params(),
          "n_features_in_": 12, "fit_seconds_": 0.01, "scaler_": pca.scaler_.state(),
          "state_": {"X_fit_": torch.from_numpy(pca.scaler_.transform(W).astype(np.float32))},
          "meta": {"checkpoint_set": "/data/zoo"}}
    torch.save(v1, tmp_path / "pca1.pt")
    for read in (read_manifold_info, load_manifold):
        with pytest.raises(GlobscopeError, match=r"pca1.pt: an old \(format version 1\) pca manifold") as e:
            read(tmp_path / "pca1.pt")
        assert f"globscope fit /data/zoo --method pca --dim 3 --seed 4 --out {tmp_path / 'pca1.pt'}" in str(e.value)


def test_autoencoder_state_round_trip(tmp_path):
    W = curved_sheet(n=40, D=16)
    man = make_manifold("autoencoder", 2, epochs=60, patience=60, seed=3).fit(W)
    man.save(tmp_path / "ae.pt")
    back = load_manifold(tmp_path / "ae.pt")
    assert back.get_params() == man.get_params() and back.schedule == "cosine" and back.beta2 == 0.95
    assert (back.n_epochs_, back.best_epoch_, back.monitor_loss_) == (man.n_epochs_, man.best_epoch_, man.monitor_loss_)
    np.testing.assert_array_equal(back.history_, man.history_)
    np.testing.assert_array_equal(back.transform(W), man.transform(W))
    np.testing.assert_array_equal(back.inverse_transform(man.transform(W)), man.inverse_transform(man.transform(W)))
    # a file from before the schedule existed was fitted with the paper's recipe, and says so
    blob = torch.load(tmp_path / "ae.pt", weights_only=True)
    for k in ("beta2", "schedule"):
        del blob["params"][k]
    torch.save(blob, tmp_path / "old.pt")
    old = load_manifold(tmp_path / "old.pt")
    assert (old.schedule, old.beta2) == ("constant", 0.999)
    np.testing.assert_array_equal(old.transform(W), man.transform(W))


# -- autoencoder divergence ----------------------------------------------------------------------------

def test_autoencoder_that_diverges_at_once_says_so():
    W = random_models(D=12)
    with pytest.raises(GlobscopeError, match="training diverged: NaN loss at epoch 1 of 50.*lower lr"):
        make_manifold("autoencoder", 2, epochs=50, lr=1e10).fit(W)
    W[3, 5] = np.inf
    with pytest.raises(GlobscopeError, match="training diverged: NaN loss at epoch 1 .*check the weights for inf"):
        with np.errstate(invalid="ignore"):
            make_manifold("autoencoder", 2, epochs=50).fit(W)


@pytest.mark.parametrize("val_fraction, n_epochs", [(0.0, 21), (0.1, 22)])
def test_autoencoder_keeps_its_best_state_when_the_loss_turns_nan_later(val_fraction, n_epochs):
    """Held out: the poisoned weights are scored after epoch 22's step; nothing held out: the
    loss of epoch 22's step scores them as epoch 21's weights, and no step is taken."""
    W = random_models(D=12)
    man = make_manifold("autoencoder", 2, epochs=100, patience=100, seed=0, val_fraction=val_fraction)

    def poison(fraction):  # called every 20 epochs: after epoch 21 (index 20) the weights are NaN
        if 0 < fraction < 1:
            with torch.no_grad():
                man.encoder_[0].weight.fill_(float("nan"))

    man.fit(W, progress=poison)
    assert man.n_epochs_ == n_epochs == len(man.history_)
    assert np.isnan(man.history_[-1]) and np.isfinite(man.history_[:-1]).all()
    assert man.best_epoch_ <= 20 and man.monitor_loss_ == man.history_[man.best_epoch_] == np.min(man.history_[:-1])
    assert all(torch.isfinite(p).all() for p in man.encoder_.parameters())
    assert np.isfinite(man.transform(W)).all() and np.isfinite(man.inverse_transform(np.zeros((2, 2)))).all()


@pytest.mark.parametrize("epochs, patience", [(60, 400), (400, 5)])
def test_autoencoder_score_is_the_kept_state_s_loss(epochs, patience):
    """With nothing held out each step's loss scores the weights before it: the kept state's
    recorded loss equals its training loss recomputed from the fitted model (to the last few bits),
    whether the fit ran out of epochs or stopped on patience."""
    W = random_models(D=30)
    man = make_manifold("autoencoder", 2, epochs=epochs, patience=patience, seed=1).fit(W)
    X = torch.as_tensor(man.scaler_.transform(W), dtype=torch.float32)
    with torch.no_grad():
        direct = float(torch.mean((man.decoder_(man.encoder_(X)) - X) ** 2))
    assert man.monitor_loss_ == pytest.approx(direct, rel=1e-5)
    assert man.monitor_loss_ == man.history_[man.best_epoch_] == man.history_.min()
    assert len(man.history_) == man.n_epochs_
    if patience < epochs:
        assert man.n_epochs_ - 1 - man.best_epoch_ == patience
