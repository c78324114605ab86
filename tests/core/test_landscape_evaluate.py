"""Batched evaluation: batched == per-model, BatchNorm recompute == a hand-computed reference."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from globscope.errors import GlobscopeError
from globscope.landscape.evaluation import AutoTuner, BatchedEvaluator
from globscope.tasks import Split, Task, get_task


def _models(task, n, seed=0, scale=1.0):
    torch.manual_seed(seed)
    ms = [task.make_model() for _ in range(n)]
    for m in ms:
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(scale)
    return ms


def _flat(task, ms):
    return torch.stack([torch.as_tensor(task.layout.flatten(m.state_dict())) for m in ms])


def _tiny_data(shape, n_train=40, n_eval=24, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    def split(n):
        return Split(rng.normal(size=(n,) + shape).astype(np.float32), rng.integers(0, n_classes, n))
    tr, ev = split(n_train), split(n_eval)
    return lambda: (tr, ev)


def tiny_bn_mlp_task():
    return Task("tiny-bn-mlp", lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)),
                _tiny_data((3,)))


def tiny_bn_cnn_task():
    return Task("tiny-bn-cnn", lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                                                     nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
                                                     nn.Flatten(), nn.Linear(3 * 4 * 4, 3)),
                _tiny_data((1, 6, 6)))


@pytest.mark.parametrize("formulation", ["stacked", "vmap", "loop", "auto"])
def test_batched_equals_per_model_loop(formulation):
    task = get_task("digits-mlp")
    ms = _models(task, 7, seed=1)
    ev = BatchedEvaluator(task, "cpu", formulation=formulation, max_batch_models=3)  # 3 batches, ragged
    loss, acc = ev.evaluate(_flat(task, ms))
    ref = np.array([task.evaluate(m) for m in ms])  # nn.Module forward, one model at a time
    np.testing.assert_allclose(loss, ref[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acc, ref[:, 1], atol=1e-12)
    assert ev.formulation in ("stacked", "vmap", "loop") and loss.dtype == np.float64


def test_data_batches_give_the_full_batch_mean():
    task = get_task("digits-mlp")
    W = _flat(task, _models(task, 4, seed=2))
    full = BatchedEvaluator(task, "cpu", formulation="vmap").evaluate(W)
    split = BatchedEvaluator(task, "cpu", formulation="vmap", data_batch=100)  # 100+100+100+60
    assert split.data_batch == 100
    for a, b in zip(full, split.evaluate(W)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_memory_budget_bounds_the_batch():
    task = get_task("digits-mlp")
    small = BatchedEvaluator(task, "cpu", memory_budget=4 << 20)
    big = BatchedEvaluator(task, "cpu", memory_budget=1 << 30)
    assert 1 <= small.batch_models < big.batch_models
    assert small.batch_models * small.data_batch * small.act_per_example * 4 <= 4 << 20


def test_non_finite_losses_are_kept():
    task = get_task("digits-mlp")
    W = _flat(task, _models(task, 3, seed=3))
    W[1] = W[1] * 1e38  # logits overflow to inf -> NaN loss
    W[2, 0] = float("nan")
    loss, _ = BatchedEvaluator(task, "cpu", formulation="vmap").evaluate(W)
    assert np.isfinite(loss[0]) and not np.isfinite(loss[1]) and np.isnan(loss[2])


def _hand_bn_mlp(m, x_cal, x_ev, y_ev):
    """Tiny Linear-BN-ReLU-Linear by hand in float64: statistics = mean and unbiased variance of the
    calibration batch's pre-BN activations; then the eval-mode forward and the cross-entropy."""
    sd = {k: v.double().numpy() for k, v in m.state_dict().items()}
    h = x_cal @ sd["0.weight"].T + sd["0.bias"]
    mu, var = h.mean(0), h.var(0, ddof=1)
    he = x_ev @ sd["0.weight"].T + sd["0.bias"]
    he = (he - mu) / np.sqrt(var + 1e-5) * sd["1.weight"] + sd["1.bias"]
    logits = np.maximum(he, 0) @ sd["3.weight"].T + sd["3.bias"]
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return -logp[np.arange(len(y_ev)), y_ev].mean(), (logits.argmax(1) == y_ev).mean(), mu, var


@pytest.mark.parametrize("formulation", ["vmap", "loop"])
def test_bn_recompute_matches_hand_computed_reference(formulation):
    task = tiny_bn_mlp_task()
    ms = _models(task, 5, seed=4)
    ev = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation=formulation)
    W = _flat(task, ms)
    loss, acc = ev.evaluate(W)
    stats = ev.statistics(W, formulation)
    x_cal = task.train_data.x[:32].double().numpy()
    x_ev, y_ev = task.eval_data.x.double().numpy(), task.eval_data.y.numpy()
    for i, m in enumerate(ms):
        l_ref, a_ref, mu, var = _hand_bn_mlp(m, x_cal, x_ev, y_ev)
        np.testing.assert_allclose(stats["1.running_mean"][i].numpy(), mu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats["1.running_var"][i].numpy(), var, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(loss[i], l_ref, rtol=1e-4)
        assert acc[i] == pytest.approx(a_ref)


def test_bn_recompute_cnn_matches_update_bn():
    """Two BatchNorm2d layers: equal to torch.optim.swa_utils.update_bn with one calibration batch."""
    task = tiny_bn_cnn_task()
    ms = _models(task, 4, seed=5)
    loss, acc = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32,
                                 formulation="vmap").evaluate(_flat(task, ms))
    x_cal = task.train_data.x[:32]
    for i, m in enumerate(ms):
        m = copy.deepcopy(m)
        torch.optim.swa_utils.update_bn([(x_cal,)], m)
        ref = task.evaluate(m)
        assert loss[i] == pytest.approx(ref[0], rel=1e-4) and acc[i] == pytest.approx(ref[1])


def test_bn_reference_uses_the_given_buffers():
    task = tiny_bn_cnn_task()
    ms = _models(task, 3, seed=6)
    torch.manual_seed(7)
    for m in ms:  # give each model distinct, valid running statistics
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.normal_()
                b.running_var.uniform_(0.5, 2.0)
    ev = BatchedEvaluator(task, "cpu", bn="reference", formulation="vmap")
    bufs = {k: torch.stack([m.state_dict()[k] for m in ms]) for k in ev.buffer_keys}
    loss, acc = ev.evaluate(_flat(task, ms), bufs)
    ref = np.array([task.evaluate(m) for m in ms])
    np.testing.assert_allclose(loss, ref[:, 0], rtol=1e-5)
    np.testing.assert_allclose(acc, ref[:, 1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    for task, bn in [(get_task("digits-mlp"), None), (tiny_bn_cnn_task(), "recompute")]:
        W = _flat(task, _models(task, 6, seed=8))
        a = BatchedEvaluator(task, "cpu", bn=bn, formulation="vmap").evaluate(W)
        for f in ("vmap", "loop"):
            b = BatchedEvaluator(task, "cuda", bn=bn, formulation=f).evaluate(W)
            np.testing.assert_allclose(a[0], b[0], rtol=1e-4)
            np.testing.assert_allclose(a[1], b[1], atol=1e-6)


@pytest.mark.parametrize("formulation", ["stacked", "vmap", "loop"])
def test_accuracy_follows_argmax_on_ties(formulation):
    """All-zero weights tie every class: argmax picks class 0, so accuracy is the share of 0s."""
    task = get_task("digits-mlp")
    W = torch.zeros(2, task.layout.n_params)
    W[1] = _flat(task, _models(task, 1, seed=9))[0]
    _, acc = BatchedEvaluator(task, "cpu", formulation=formulation).evaluate(W)
    assert acc[0] == pytest.approx(float((task.eval_data.y == 0).float().mean()))
    assert acc[1] == pytest.approx(task.evaluate(_models(task, 1, seed=9)[0])[1])


def _head_models(task, method, n=7, seed=10):
    """A manifold of 6 random models of ``task`` (autoencoder: a few epochs), its affine head, and
    ``n`` latent points around the models (some outside their box)."""
    from globscope.manifolds import make_manifold

    W0 = _flat(task, _models(task, 6, seed=seed)).numpy()
    man = make_manifold(method, 2, **({"epochs": 5} if method == "autoencoder" else {})).fit(W0)
    Z = man.transform(W0)
    Zq = Z.mean(0) + 1.5 * np.random.default_rng(seed).normal(size=(n, 2)) * Z.std(0)
    return man, Zq


@pytest.mark.parametrize("method", ["pca", "autoencoder"])
def test_factored_equals_per_model_loop(method):
    """The first layer in code space (P precomputed) == the decoded weights in an nn.Module."""
    task = get_task("digits-mlp")
    man, Zq = _head_models(task, method)
    code_fn, A, b = man.affine_head("cpu")
    C = code_fn(torch.as_tensor(Zq, dtype=torch.float32))
    model = task.make_model().eval()
    ref = []
    for w in man.inverse_transform(Zq):
        model.load_state_dict(task.layout.unflatten(torch.from_numpy(w)), strict=False)
        ref.append(task.evaluate(model))
    ref = np.array(ref)
    for kw in ({"max_batch_models": 3}, {"data_batch": 100}):  # ragged model batches; data slices
        ev = BatchedEvaluator(task, "cpu", formulation="factored", **kw)
        assert ev.set_affine_head(A, b)
        loss, acc = ev.evaluate(codes=C)
        np.testing.assert_allclose(loss, ref[:, 0], rtol=1e-5)
        np.testing.assert_allclose(acc, ref[:, 1], atol=1e-12)
        # full weights given to a factored evaluator: the same numbers through the stacked path
        np.testing.assert_allclose(ev.evaluate(ev.decode_codes(C))[0], ref[:, 0], rtol=1e-5)
    assert ev.describe()["affine_head"] == {"K": A.shape[0], "precomputed_bytes": 4 * (A.shape[0] + 1) * 32 * 360}


def test_auto_measures_factored_only_when_it_saves_work():
    task = get_task("digits-mlp")
    man, Zq = _head_models(task, "pca", n=5)
    code_fn, A, b = man.affine_head("cpu")
    ev = BatchedEvaluator(task, "cpu", formulation="auto", threads=1)
    ev.set_affine_head(A, b)
    assert ev.candidates(codes=True)[0][0] == "factored" and "factored" not in {c[0] for c in ev.candidates()}
    loss, _ = ev.evaluate(codes=code_fn(torch.as_tensor(Zq, dtype=torch.float32)))
    assert any(k.startswith("factored@") for k in ev.timings)
    ref, _ = BatchedEvaluator(task, "cpu", formulation="stacked").evaluate(man.inverse_transform(Zq))
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    # K + 1 ≥ the first layer's inputs: more work, never measured
    big = BatchedEvaluator(task, "cpu", formulation="auto")
    big.set_affine_head(torch.zeros(64, task.layout.n_params), torch.zeros(task.layout.n_params))
    assert "factored" not in {c[0] for c in big.candidates(codes=True)}


def test_auto_screens_on_a_slice_then_times_the_survivors_on_the_batch(monkeypatch):
    """On the CPU a batch of more than AutoTuner.SCREEN_MODELS models: every candidate runs once on that many,
    the clear losers are dropped; the survivors are timed on the whole batch and the winner's
    numbers are those of the pinned formulation run on the same batch (bit for bit)."""
    task = get_task("digits-mlp")
    W = _flat(task, _models(task, 40, seed=5))
    ev = BatchedEvaluator(task, "cpu", formulation="auto", max_batch_models=40)
    cands = {f"{f}@{t}thr@{b}" for f, t, b in ev.candidates()}  # before the choice fixes the data batch
    slow = {"loop"}  # stand-in for a machine where the loop is a clear loser
    orig = ev.tuner.measure

    def timed(cand, *a, **k):
        t, out, n = orig(cand, *a, **k)
        return (t * 100 if cand[0] in slow else t), out, n
    monkeypatch.setattr(ev.tuner, "measure", timed)
    with ev.session():
        loss, acc = ev.evaluate(W)
        choice = ev.choice()
    tun = ev.tuning
    assert tun["screen_models"] == AutoTuner.SCREEN_MODELS and tun["seconds"] > 0
    assert set(tun["screened"]) == cands
    assert {k for k in cands if k.startswith("loop@")} <= set(tun["dropped"]) < cands
    assert not set(tun["dropped"]) & set(ev.timings) and choice["formulation"] != "loop"
    pinned = BatchedEvaluator(task, "cpu", formulation="vmap")
    pinned.pin(**choice)
    with pinned.session():
        l2, a2 = pinned.evaluate(W)
    np.testing.assert_array_equal(loss, l2)
    np.testing.assert_array_equal(acc, a2)
    # a batch no larger than the slice: no screening round
    small = BatchedEvaluator(task, "cpu", formulation="auto", max_batch_models=AutoTuner.SCREEN_MODELS)
    small.evaluate(W[:8])
    assert small.tuning["screen_models"] is None and not small.tuning["dropped"]


def test_tune_formulations_affine_head_and_pin_are_public():
    """``tune_formulations`` restricts ``auto`` (timed even where it would not save work), the
    prepared head is readable, and ``pin`` keeps its models per batch through ``set_affine_head``."""
    task = get_task("digits-mlp")
    man, Zq = _head_models(task, "pca", n=5)
    code_fn, A, b = man.affine_head("cpu")
    ev = BatchedEvaluator(task, "cpu", formulation="auto", tune_formulations=("factored",), threads=1)
    assert ev.affine_head is None and ev.set_affine_head(A, b)
    hd = ev.affine_head
    assert (hd.K, hd.nbytes, hd.n_rest) == (2, ev.head_bytes(2), 32 * 10 + 10)
    assert {c[0] for c in ev.candidates(codes=True)} == {"factored"}
    loss, _ = ev.evaluate(codes=code_fn(torch.as_tensor(Zq, dtype=torch.float32)))
    assert ev.formulation == "factored" and all(k.startswith("factored@") for k in ev.timings)
    with pytest.raises(GlobscopeError, match="grouped formulation needs"):
        BatchedEvaluator(task, "cpu", tune_formulations=("grouped",))
    with pytest.raises(GlobscopeError, match="formulation='auto'"):
        BatchedEvaluator(task, "cpu", formulation="vmap", tune_formulations=("vmap",))
    free = BatchedEvaluator(task, "cpu", memory_budget=2 << 20)
    before = free.batch_models
    assert free.set_affine_head(A, b) and free.batch_models < before  # P takes its share of the budget
    pinned = BatchedEvaluator(task, "cpu", memory_budget=2 << 20)
    pinned.pin("factored", 1, 360, 256)
    assert pinned.set_affine_head(A, b) and pinned.choice()["batch_models"] == 256


def test_factored_memory_guard_and_applicability():
    task = get_task("digits-mlp")
    D = task.layout.n_params
    ev = BatchedEvaluator(task, "cpu", formulation="auto", memory_budget=2 << 20)
    assert ev.head_bytes(128) == 4 * 129 * 32 * 360  # (K+1) × width × n_eval floats
    assert not ev.set_affine_head(torch.zeros(128, D), torch.zeros(D)) and ev.head is None
    assert ev.set_affine_head(torch.zeros(2, D), torch.zeros(D))
    with pytest.raises(Exception, match="affine head"):
        ev.set_affine_head(torch.zeros(2, D + 1), torch.zeros(D + 1))
    cnn = tiny_bn_cnn_task()
    assert not BatchedEvaluator(cnn, "cpu", formulation="vmap").factorable
    with pytest.raises(Exception, match="factored"):
        BatchedEvaluator(cnn, "cpu", formulation="factored")


def tiny_pool_cnn_task(bn=True):
    """Conv-BN-ReLU-MaxPool (odd size: the last row dropped)-Conv-ReLU-AvgPool-Flatten-Linear-ReLU-Linear."""
    def make():
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3) if bn else nn.Identity(), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4) if bn
                             else nn.Identity(), nn.ELU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 5), nn.ReLU(),
                             nn.Linear(5, 3))
    return Task("tiny-pool-cnn" + ("-bn" if bn else ""), make, _tiny_data((1, 7, 7)))


def _random_bn_statistics(models, seed: int, scales: bool = False):
    """Random BatchNorm running statistics (and, with ``scales``, random affine scales, negative
    ones too, which the grouped formulation folds into the convolutions) on ``models``."""
    torch.manual_seed(seed)
    for m in models:
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.normal_()
                b.running_var.uniform_(0.5, 2.0)
                if scales and b.affine:
                    b.weight.data.normal_()
    return models


@pytest.mark.parametrize("task_fn,bn", [(tiny_bn_cnn_task, "recompute"), (tiny_bn_cnn_task, "reference"),
                                        (lambda: tiny_pool_cnn_task(True), "recompute"),
                                        (lambda: tiny_pool_cnn_task(False), None)])
def test_grouped_equals_per_model_loop(task_fn, bn):
    task = task_fn()
    ms = _random_bn_statistics(_models(task, 7, seed=11), seed=12)
    W = _flat(task, ms)
    bufs = None
    if bn == "reference":
        keys = BatchedEvaluator(task, "cpu", bn=bn, formulation="loop").buffer_keys
        bufs = {k: torch.stack([m.state_dict()[k] for m in ms]) for k in keys}
    ref = BatchedEvaluator(task, "cpu", bn=bn, calibration_size=32, formulation="loop").evaluate(W, bufs)
    for db in (None, 5):  # whole set; slices of 5 examples (G = 25 models a pass)
        ev = BatchedEvaluator(task, "cpu", bn=bn, calibration_size=32, formulation="grouped", data_batch=db,
                              max_batch_models=4)
        assert ev.groupable
        loss, acc = ev.evaluate(W, bufs)
        np.testing.assert_allclose(loss, ref[0], rtol=1e-5)
        np.testing.assert_allclose(acc, ref[1], atol=1e-12)


def _cnn_variant(kind: str):
    """Plain CNNs of the class ``groupable`` accepts: (layers, input shape)."""
    if kind == "rgb-k5-stride2-avg":  # 3 input channels, 5×5 stride 2, no BatchNorm, average pooling, hidden Linear
        return [nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.Tanh(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 3 * 3, 7), nn.ReLU(), nn.Linear(7, 3)], (3, 13, 13)
    if kind == "bn-maxpool3-overlap":  # overlapping max pooling (3, stride 2): not fused, still moved past ReLU
        return [nn.Conv2d(1, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(5, 4, 2), nn.BatchNorm2d(4, affine=False), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(4 * 2 * 2, 3)], (1, 11, 11)
    if kind == "dilated-grouped-bn-after-act":  # dilation, a grouped later conv, BatchNorm after the activation
        return [nn.Conv2d(2, 6, 3, dilation=2, padding=2), nn.Identity(), nn.BatchNorm2d(6), nn.ELU(),
                nn.MaxPool2d(2), nn.Conv2d(6, 6, 3, padding=1, groups=3), nn.ReLU(), nn.BatchNorm2d(6),
                nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4), nn.Identity(), nn.ReLU(), nn.MaxPool2d((2, 1)),
                nn.Flatten(), nn.Linear(4 * 2 * 4, 3)], (2, 9, 8)
    if kind == "pool-3x3-tiling-odd":  # a 3×3 tiling max pooling fused into the first product, odd sizes
        return [nn.Conv2d(1, 3, 2, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(3),
                nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.BatchNorm2d(5), nn.SiLU(), nn.AvgPool2d(2, 1),
                nn.Flatten(), nn.Linear(5 * 1 * 1, 3)], (1, 10, 10)
    raise ValueError(kind)


CNN_VARIANTS = ["rgb-k5-stride2-avg", "bn-maxpool3-overlap", "dilated-grouped-bn-after-act", "pool-3x3-tiling-odd"]


def variant_cnn_task(kind: str):
    layers, shape = _cnn_variant(kind)
    return Task(f"cnn-{kind}", lambda: nn.Sequential(*copy.deepcopy(layers)), _tiny_data(shape, n_train=45, n_eval=23))


@pytest.mark.parametrize("kind", CNN_VARIANTS)
@pytest.mark.parametrize("bn", ["recompute", "reference"])
def test_grouped_variants_equal_per_model_loop(kind, bn):
    """The grouped formulation (first convolution as one product over shared patches, BatchNorm
    folded, pooling moved or fused, channels-last) equals the per-model loop on CNNs of varied
    channels, kernels, strides, dilation, padding, pooling and BatchNorm placement."""
    from globscope.landscape.evaluation import groupable

    task = variant_cnn_task(kind)
    assert groupable(task.make_model())
    ms = _random_bn_statistics(_models(task, 6, seed=21), seed=22, scales=True)
    W = _flat(task, ms)
    bn = bn if task.has_batchnorm else None
    bufs = None
    if bn == "reference":
        keys = BatchedEvaluator(task, "cpu", bn=bn, formulation="loop").buffer_keys
        bufs = {k: torch.stack([m.state_dict()[k] for m in ms]) for k in keys}
    ref = BatchedEvaluator(task, "cpu", bn=bn, calibration_size=40, formulation="loop").evaluate(W, bufs)
    for db in (None, 4):  # whole set; slices of 4 examples (calibration too)
        ev = BatchedEvaluator(task, "cpu", bn=bn, calibration_size=40, formulation="grouped", data_batch=db,
                              max_batch_models=5)
        loss, acc = ev.evaluate(W, bufs)
        np.testing.assert_allclose(loss, ref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(acc, ref[1], atol=1e-12)


@pytest.mark.parametrize("kind", ["bn-maxpool3-overlap", "dilated-grouped-bn-after-act", "pool-3x3-tiling-odd"])
def test_grouped_statistics_equal_probe(kind):
    """Recomputed BatchNorm statistics of the grouped formulation (the first convolution's in closed
    form from the patches' moments, the others over calibration slices) equal the probe's."""
    from globscope.landscape.evaluation.common import bn_statistics

    task = variant_cnn_task(kind)
    W = _flat(task, _models(task, 5, seed=23))
    ev = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=40, formulation="grouped")
    ref = bn_statistics(ev.setup, W, per_model=True)
    g = ev.strategies["grouped"]
    for db in (40, 7):
        got = g.statistics(task.layout.unflatten(W), db)
        assert set(got) == set(ref)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)


def test_grouped_product_blocks_and_uncached_patches(monkeypatch):
    """The first product taken a few outputs at a time, and patches unfolded per data slice
    instead of kept, give the same numbers."""
    from globscope.landscape.evaluation import grouped

    task = variant_cnn_task("pool-3x3-tiling-odd")
    W = _flat(task, _models(task, 5, seed=24))
    ref = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=40, formulation="loop").evaluate(W)
    monkeypatch.setattr(grouped, "PRODUCT_VALUES", 7 * 3)  # a few rows per block, a ragged last one
    monkeypatch.setattr(grouped, "PATCH_CACHE_BYTES", 0)
    ev = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=40, formulation="grouped", data_batch=6)
    loss, acc = ev.evaluate(W)
    assert ev.strategies["grouped"]._patches["eval"] is None
    np.testing.assert_allclose(loss, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acc, ref[1], atol=1e-12)


def test_grouped_plan_and_pooling():
    """The plan folds BatchNorm into the convolution before it, fuses a tiling max pooling into the
    first product (moved past the bias and ReLU), moves it past ReLU only; and the 2×2 max pooling
    of channels-last activations equals ``F.max_pool2d`` (odd sizes, NaN)."""
    import torch.nn.functional as F

    from globscope.landscape.evaluation.grouped import max_pool_2x2, plan

    steps = plan(get_task("fashion-cnn").make_model())
    assert [(s.kind, s.bn, s.pool) for s in steps] == [
        ("patches", "1", (2, 2)), ("bias", "1", None), ("act", None, None), ("conv", "5", None),
        ("pool", None, None), ("act", None, None), ("flatten", None, None), ("linear", None, None)]
    steps = plan(variant_cnn_task("dilated-grouped-bn-after-act").make_model())
    assert [s.kind for s in steps][:7] == ["patches", "bias", "act", "pool", "conv", "act", "bn"]  # ELU: not moved
    assert steps[0].bn == "2" and steps[0].pool is None and steps[7].bn == "9"
    h = torch.randn(3, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    h[0, 1, 2, 3] = float("nan")
    out = max_pool_2x2(h)
    torch.testing.assert_close(out, F.max_pool2d(h, 2), equal_nan=True)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_grouped_applicability_and_auto():
    from globscope.landscape.evaluation import groupable

    assert groupable(get_task("fashion-cnn").make_model()) and not groupable(get_task("digits-mlp").make_model())
    assert not groupable(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)))
    assert not groupable(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2)))
    with pytest.raises(Exception, match="grouped"):
        BatchedEvaluator(get_task("digits-mlp"), "cpu", formulation="grouped")
    task = tiny_bn_cnn_task()
    W = _flat(task, _models(task, 6, seed=13))
    ev = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation="auto", threads=1)
    loss, _ = ev.evaluate(W)
    assert any(k.startswith("grouped@") for k in ev.timings)
    ref, _ = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation="vmap").evaluate(W)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_factored_and_grouped_equal_cpu():
    task = get_task("digits-mlp")
    man, Zq = _head_models(task, "pca")
    code_fn, A, b = man.affine_head("cpu")
    C = code_fn(torch.as_tensor(Zq, dtype=torch.float32))
    a = BatchedEvaluator(task, "cpu", formulation="loop").evaluate(man.inverse_transform(Zq))
    ev = BatchedEvaluator(task, "cuda", formulation="factored")
    assert ev.set_affine_head(A, b)
    f = ev.evaluate(codes=C)
    np.testing.assert_allclose(f[0], a[0], rtol=1e-4)
    task = tiny_pool_cnn_task(True)
    W = _flat(task, _models(task, 6, seed=14))
    a = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation="loop").evaluate(W)
    g = BatchedEvaluator(task, "cuda", bn="recompute", calibration_size=32, formulation="grouped").evaluate(W)
    np.testing.assert_allclose(g[0], a[0], rtol=1e-4)
