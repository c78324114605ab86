"""Mode-connectivity curves: the curves' geometry by hand, the barrier by hand, a trained curve
lowering the loss between two digits-mlp models, BatchNorm along a curve == update_bn by hand."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from globscope.errors import Aborted, GlobscopeError
from globscope.landscape.evaluation import BatchedEvaluator
from globscope.tasks import Split, Task, get_task
from globscope.validation.curves import CURVES, Curve, barrier, evaluate_along, line, train_curve


def _vectors(D=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    w0, theta, w1 = (torch.randn(D, generator=g) for _ in range(3))
    w0[0] = -0.0  # a signed zero: 1·w0 + 0·θ + 0·w1 would turn it into +0
    return w0, theta, w1


def _bits(x):
    return x.contiguous().view(torch.int32)


@pytest.mark.parametrize("kind", CURVES)
def test_ends_are_exact(kind):
    w0, theta, w1 = _vectors()
    P = Curve(kind, w0, theta, w1).points([0.0, 1.0])
    assert P.shape == (2, 7) and P.dtype == torch.float32
    assert torch.equal(_bits(P[0]), _bits(w0)) and torch.equal(_bits(P[1]), _bits(w1))


def test_midpoints_by_hand():
    w0, theta, w1 = _vectors()
    assert torch.equal(Curve("polychain", w0, theta, w1).points([0.5])[0], theta)
    quarter = Curve("polychain", w0, theta, w1).points([0.25, 0.75])  # halfway along each segment
    torch.testing.assert_close(quarter, torch.stack([(w0 + theta) / 2, (theta + w1) / 2]), rtol=0, atol=1e-6)
    torch.testing.assert_close(Curve("bezier", w0, theta, w1).points([0.5])[0], (w0 + 2 * theta + w1) / 4,
                               rtol=0, atol=1e-6)
    # t = 0.2 by hand: (0.8)² w0 + 2·0.2·0.8 θ + (0.2)² w1
    torch.testing.assert_close(Curve("bezier", w0, theta, w1).points([0.2])[0],
                               0.64 * w0 + 0.32 * theta + 0.04 * w1, rtol=0, atol=1e-6)


def test_line_is_linear_in_t():
    w0, _, w1 = _vectors(seed=1)
    t = np.array([0.0, 0.1, 0.25, 0.5, 0.7, 1.0])
    hand = (1 - t)[:, None] * w0.double().numpy() + t[:, None] * w1.double().numpy()
    straight = line(w0, w1)
    np.testing.assert_allclose(straight.points(t).double().numpy(), hand, rtol=0, atol=1e-6)
    as_chain = Curve("polychain", w0, straight.control, w1)  # the same line, the other kind
    np.testing.assert_allclose(as_chain.points(t).double().numpy(), hand, rtol=0, atol=1e-6)


def test_barrier_by_hand():
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    # the ends' interpolation is 1 + 2t = 1, 1.5, 2, 2.5, 3; the rises 0, 0.5, 2, 0, 0
    assert barrier(t, [1.0, 2.0, 4.0, 2.5, 3.0]) == pytest.approx(2.0)
    assert barrier(t, [1.0, 1.2, 1.5, 2.0, 3.0]) == 0.0  # never above the interpolation
    with pytest.raises(GlobscopeError, match="from 0 to 1"):
        barrier([0.0, 0.5], [1.0, 2.0])
    with pytest.raises(GlobscopeError, match="one shape"):
        barrier([0.0, 1.0], [1.0, 2.0, 3.0])


def test_clear_errors():
    task = get_task("digits-mlp")
    D = task.layout.n_params
    w0, w1 = torch.zeros(D), torch.ones(D)
    with pytest.raises(GlobscopeError, match="differ in length"):
        line(w0, w1[:-1])
    with pytest.raises(GlobscopeError, match="do not fit task"):
        train_curve(task, w0[:-1], w1[:-1], steps=1)
    with pytest.raises(GlobscopeError, match="unknown kind 'spline'"):
        train_curve(task, w0, w1, kind="spline", steps=1)
    with pytest.raises(GlobscopeError, match="unknown kind"):
        Curve("spline", w0, w1, w1)
    with pytest.raises(GlobscopeError, match=r"\[0, 1\]"):
        line(w0, w1).points([1.5])
    ev = BatchedEvaluator(task, "cpu", formulation="stacked")
    with pytest.raises(GlobscopeError, match="at least 2"):
        evaluate_along(ev, line(w0, w1), n_points=1)
    with pytest.raises(GlobscopeError, match="does not fit"):
        evaluate_along(ev, line(w0[:-1], w1[:-1]))


def _trained_digits(task, seed, steps=300):
    """A digits-mlp model trained as the zoo trains (SGD, momentum 0.9, batch 32, lr 0.05)."""
    torch.manual_seed(seed)
    model = task.make_model()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train, done = task.train_data, 0
    while done < steps:
        perm = torch.randperm(len(train), generator=gen)
        for s in range(0, len(perm), 32):
            idx = perm[s:s + 32]
            loss = task.loss_fn(model(train.x[idx]), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return torch.as_tensor(task.layout.flatten(model.state_dict()))


@pytest.fixture(scope="module")
def digits_pair():
    task = get_task("digits-mlp")
    return task, _trained_digits(task, 1), _trained_digits(task, 2)


@pytest.mark.parametrize("kind", CURVES)
def test_trained_curve_lowers_the_maximum_loss(digits_pair, kind):
    task, w0, w1 = digits_pair
    ev = BatchedEvaluator(task, "cpu", formulation="stacked")
    straight = evaluate_along(ev, line(w0, w1))
    assert straight["t"][0] == 0 and straight["t"][-1] == 1 and len(straight["t"]) == 31
    # the untrained curve (θ at the midpoint) is the line: a barrier well above both ends
    untrained = evaluate_along(ev, Curve(kind, w0, (w0 + w1) / 2, w1))
    np.testing.assert_allclose(untrained["loss"], straight["loss"], rtol=1e-5)
    assert barrier(straight["t"], straight["loss"]) > 0.1
    curve = train_curve(task, w0, w1, kind=kind)
    assert len(curve.history) == 300 and curve.kind == kind
    assert torch.equal(curve.start, w0) and torch.equal(curve.end, w1)
    along = evaluate_along(ev, curve)
    assert along["loss"].max() < straight["loss"].max() - 0.1
    assert barrier(along["t"], along["loss"]) < 0.25 * barrier(straight["t"], straight["loss"])
    assert along["accuracy"].min() > straight["accuracy"].min()


def test_training_is_deterministic_and_reports(digits_pair):
    task, w0, w1 = digits_pair
    seen = []
    a = train_curve(task, w0, w1, steps=5, seed=3, progress=seen.append)
    b = train_curve(task, w0, w1, steps=5, seed=3)
    c = train_curve(task, w0, w1, steps=5, seed=4)
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert torch.equal(a.control, b.control) and a.history == b.history
    assert not torch.equal(a.control, c.control)
    polls = iter([False, False, True])
    with pytest.raises(Aborted, match="after 2 of 5 steps"):
        train_curve(task, w0, w1, steps=5, should_abort=lambda: next(polls))


def _bn_task():
    """A tiny user task: Conv2d–BatchNorm2d–ReLU–Flatten–Linear on random data (as test_landscape_driver's)."""
    rng = np.random.default_rng(0)
    xe, ye = rng.normal(size=(24, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 24)
    xt, yt = rng.normal(size=(16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16)
    data = (Split(xt, yt), Split(xe, ye))
    return Task("mypkg.tasks:make", lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
                                                          nn.Flatten(), nn.Linear(2 * 16, 3)), lambda: data)


def _bn_models(task):
    torch.manual_seed(0)
    models = [task.make_model() for _ in range(2)]
    for m in models:  # distinct, valid running statistics: they must come out unchanged
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
    return models


def test_batchnorm_curve_trains_on_batch_statistics_and_leaves_buffers_alone():
    task = _bn_task()
    models = _bn_models(task)
    states = [copy.deepcopy(m.state_dict()) for m in models]
    w0, w1 = (torch.as_tensor(task.layout.flatten(m.state_dict())) for m in models)
    curve = train_curve(task, w0, w1, steps=20, batch_size=8)
    assert np.isfinite(curve.history).all() and not torch.equal(curve.control, (w0 + w1) / 2)
    for m, s in zip(models, states):
        for k, v in m.state_dict().items():
            assert torch.equal(v, s[k]), k
    # start == end: every point is w0, and the first step's loss is w0's in training mode on the
    # whole training set (batch statistics), not with its stored running statistics
    first = train_curve(task, w0, w0, steps=1, batch_size=16).history[0]
    m = copy.deepcopy(models[0]).train()
    with torch.no_grad():
        hand = float(task.loss_fn(m(task.train_data.x), task.train_data.y))
    assert first == pytest.approx(hand, rel=1e-5)
    assert task.evaluate(models[0], task.train_data)[0] != pytest.approx(hand, rel=1e-3)


def test_batchnorm_along_the_curve_equals_update_bn_by_hand():
    task = _bn_task()
    w0, w1 = (torch.as_tensor(task.layout.flatten(m.state_dict())) for m in _bn_models(task))
    curve = train_curve(task, w0, w1, steps=20, batch_size=8)
    along = evaluate_along(BatchedEvaluator(task, "cpu", bn="recompute", formulation="vmap"), curve, n_points=6)
    assert np.isfinite(along["loss"]).all()
    x_cal = task.train_data.x  # the calibration batch: the first 256 training examples, here all 16
    for t, loss, acc in zip(along["t"], along["loss"], along["accuracy"]):
        m = task.make_model()
        m.load_state_dict(task.layout.unflatten(curve.points([t])[0]), strict=False)
        torch.optim.swa_utils.update_bn([(x_cal,)], m)
        ref_loss, ref_acc = task.evaluate(m)
        assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6) and acc == pytest.approx(ref_acc)
