"""Re-basin: permutations recovered against permutations made by hand with numpy, the function
kept (and changed by a wrong permutation), trained networks brought closer, models refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from globscope.errors import GlobscopeError
from globscope.tasks import get_task, models
from globscope.validation.rebasin import (
    activation_matching,
    max_output_difference,
    permutation_spec,
    permute_trajectory,
    rebasin,
    weight_matching,
)


def _cnn12():
    """A CNN on 12×12 images: a Flatten of 5 channels of 6×6, a BatchNorm1d after a hidden Linear."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 5, 3, padding=1), nn.Tanh(), nn.Flatten(),
        nn.Linear(5 * 6 * 6, 20), nn.BatchNorm1d(20), nn.ELU(), nn.Linear(20, 7),
    )


# Each permutation written out by hand for its architecture: s is a dict of numpy arrays, p, q the
# permutations of the first and second hidden layer; unit i of the result is unit p[i] of s.

def _hand_mlp1(s, p):
    s["1.weight"], s["1.bias"] = s["1.weight"][p], s["1.bias"][p]
    s["3.weight"] = s["3.weight"][:, p]


def _hand_mlp2(s, p, q):
    s["1.weight"], s["1.bias"] = s["1.weight"][p], s["1.bias"][p]
    s["3.weight"], s["3.bias"] = s["3.weight"][q][:, p], s["3.bias"][q]
    s["5.weight"] = s["5.weight"][:, q]


def _hand_cnn(s, p, q):
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        s[k] = s[k][p]
    s["4.weight"] = s["4.weight"][q][:, p]
    for k in ("4.bias", "5.weight", "5.bias", "5.running_mean", "5.running_var"):
        s[k] = s[k][q]
    s["9.weight"] = s["9.weight"].reshape(10, 16, 7 * 7)[:, q].reshape(10, -1)  # channel-major flatten


def _hand_cnn12(s, p, q, r):
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        s[k] = s[k][p]
    s["4.weight"], s["4.bias"] = s["4.weight"][q][:, p], s["4.bias"][q]
    s["7.weight"] = s["7.weight"][r].reshape(20, 5, 36)[:, q].reshape(20, -1)
    for k in ("7.bias", "8.weight", "8.bias", "8.running_mean", "8.running_var"):
        s[k] = s[k][r]
    s["10.weight"] = s["10.weight"][:, r]


# name: (factory, input shape, hand permutation, {group: (size, index of the module after whose
# output the units' activation is read)} in the hand function's order)
CASES = {
    "mlp": (lambda: models.mlp(64, (32,), 10), (64,), _hand_mlp1, {"P_1": (32, 2)}),
    "mlp2": (lambda: models.mlp(64, (32, 24), 10), (64,), _hand_mlp2, {"P_1": (32, 2), "P_3": (24, 4)}),
    "cnn": (models.small_cnn, (1, 28, 28), _hand_cnn, {"P_0": (8, 2), "P_4": (16, 6)}),
    "cnn12": (_cnn12, (1, 12, 12), _hand_cnn12, {"P_0": (6, 2), "P_4": (5, 5), "P_7": (20, 9)}),
}


def _state(factory, seed):
    """A fresh model's state with its BatchNorm parameters and buffers randomised, so they matter."""
    torch.manual_seed(seed)
    model = factory()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.num_batches_tracked.fill_(7)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _data(case, n=200):
    if CASES[case][1] == (64,):
        return get_task("digits-mlp").train_data.x[:n]
    return torch.rand((n,) + CASES[case][1], generator=torch.Generator().manual_seed(1))


def _permuted_by_hand(case, state, seed=3):
    """The state permuted by random permutations through the hand-written function; the permutations."""
    _, _, hand, sizes = CASES[case]
    rng = np.random.default_rng(seed)
    perms = {g: rng.permutation(n) for g, (n, _) in sizes.items()}
    s = {k: v.numpy().copy() for k, v in state.items()}
    hand(s, *perms.values())
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in s.items()}, perms


@pytest.mark.parametrize("case, method", [(c, "weight") for c in CASES] + [("mlp", "activation")])
def test_rebasin_recovers_a_hand_made_permutation(case, method):
    factory = CASES[case][0]
    state = _state(factory, seed=0)
    permuted, hand = _permuted_by_hand(case, state)
    res = rebasin(factory, state, permuted, _data(case), method=method)
    for g, p in hand.items():
        np.testing.assert_array_equal(res.perms[g], np.argsort(p))  # the inverse permutation
    assert set(res.perms) == set(hand)
    assert res.distance_before > 1 and res.distance_after == 0
    assert set(res.state) == set(state)
    for k, v in state.items():
        assert torch.equal(res.state[k], v), k  # buffers too, num_batches_tracked untouched
    assert res.max_output_diff <= 1e-5


@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_permutation_keeps_the_function_and_a_wrong_one_does_not(case):
    factory = CASES[case][0]
    state, x = _state(factory, seed=1), _data(case)
    permuted, hand = _permuted_by_hand(case, state)
    assert max_output_difference(factory, state, permuted, x) <= 1e-5
    first, p = next(iter(hand.items()))
    layer = first.removeprefix("P_")
    one_side = dict(state, **{f"{layer}.{k}": state[f"{layer}.{k}"][p] for k in ("weight", "bias")})
    assert max_output_difference(factory, state, one_side, x) > 1e-2  # the next layer's inputs not permuted
    if case == "cnn":  # everything permuted but the running statistics: they matter in eval mode
        stale = dict(permuted, **{k: state[k] for k in state if "running" in k})
        assert max_output_difference(factory, state, stale, x) > 1e-2


def _dead_units(case, state, x):
    """{group: bool mask of the units (of the unpermuted network) whose activation is constant on x}."""
    model = CASES[case][0]()
    model.load_state_dict(state)
    model.eval()
    outputs = []
    with torch.no_grad():
        for m in model:
            x = m(x)
            outputs.append(x)
    return {g: outputs[i].movedim(1, -1).reshape(-1, n).std(0).numpy() == 0
            for g, (n, i) in CASES[case][3].items()}


@pytest.mark.parametrize("case", ["mlp2", "cnn", "cnn12"])
def test_activation_matching_recovers_every_live_unit(case):
    """Units constant on the data (dead ReLUs: these random networks have several) correlate with
    nothing, so activations cannot order them among themselves; every other unit is recovered."""
    factory, x = CASES[case][0], _data(case)
    state = _state(factory, seed=0)
    permuted, hand = _permuted_by_hand(case, state)
    res = rebasin(factory, state, permuted, x, method="activation")
    dead = _dead_units(case, state, x)
    for g, p in hand.items():
        live = ~dead[g]
        np.testing.assert_array_equal(res.perms[g][live], np.argsort(p)[live])
    assert res.max_output_diff <= 1e-5
    assert res.distance_after < res.distance_before


def test_spec_reads_the_flatten_block_from_the_input_shape():
    spec = permutation_spec(_cnn12(), torch.zeros(1, 1, 12, 12))
    assert [(g.name, g.size, g.activation) for g in spec.groups.values()] == [
        ("P_0", 6, "2"), ("P_4", 5, "5"), ("P_7", 20, "9")]
    assert ("P_4", ("7.weight", 1, 36)) in [(g, tuple(a)) for g, a in spec.axes_of("7.weight")]
    assert "1.num_batches_tracked" not in spec.keys


@pytest.fixture(scope="module")
def trained_pair():
    task = get_task("digits-mlp")
    x, y = task.train_data.x, task.train_data.y
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = task.make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        for _ in range(300):
            idx = torch.randint(len(x), (64,), generator=g)
            opt.zero_grad()
            task.loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        assert task.evaluate(model)[1] > 0.85
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return task, states


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_rebasin_brings_trained_networks_closer_without_changing_b(trained_pair, method):
    task, (a, b) = trained_pair
    x = task.train_data.x
    res = rebasin(task.make_model, a, b, x, method=method)
    assert res.distance_after < 0.9 * res.distance_before
    assert not np.array_equal(res.perms["P_1"], np.arange(32))
    assert max_output_difference(task.make_model, b, res.state, task.eval_data.x) <= 1e-5
    assert res.max_output_diff <= 1e-5


def test_weight_matching_is_deterministic_for_a_seed(trained_pair):
    task, (a, b) = trained_pair
    spec = permutation_spec(task.make_model(), task.train_data.x[:1])
    first = weight_matching(spec, a, b, seed=5)
    assert all(np.array_equal(first[g], p) for g, p in weight_matching(spec, a, b, seed=5).items())
    acts = activation_matching(spec, task.make_model, a, b, task.train_data.x, batch_size=100)
    assert np.array_equal(acts["P_1"], activation_matching(spec, task.make_model, a, b, task.train_data.x)["P_1"])


def test_permute_trajectory_applies_one_permutation_to_every_checkpoint():
    factory = CASES["cnn"][0]
    states = [_state(factory, seed) for seed in (0, 1, 2)]
    spec = permutation_spec(factory(), torch.zeros(1, 1, 28, 28))
    perms = {g.name: np.random.default_rng(0).permutation(g.size) for g in spec.groups.values()}
    out = permute_trajectory(spec, states, perms)
    for s, o in zip(states, out):
        expected, _ = _permuted_by_hand("cnn", s, seed=99)  # a different permutation: not equal
        assert not torch.equal(expected["0.weight"], o["0.weight"])
        mine = {k: v.numpy().copy() for k, v in s.items()}
        _hand_cnn(mine, perms["P_0"], perms["P_4"])
        assert all(np.array_equal(mine[k], o[k].numpy()) for k in s)
        assert all(o[k] is not s[k] for k in s)  # copies, the input untouched
    assert torch.equal(states[0]["0.weight"], _state(factory, 0)["0.weight"])


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc(x)


class _OwnForward(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


_shared = nn.Linear(4, 4)


@pytest.mark.parametrize("model, shape, message", [
    (nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3)), (4,), "module '0' (BatchNorm1d): a BatchNorm before"),
    (_Net(), (4,), "the model (_Net)"),
    (nn.Sequential(nn.Linear(4, 4), _Residual(), nn.Linear(4, 2)), (4,), "module '1' (_Residual)"),
    (nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Softmax(1)), nn.Linear(4, 2)), (4,),
     "module '1.1' (Softmax)"),
    (nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), (4, 3, 3),
     "module '0' (Conv2d): grouped convolution"),
    (_OwnForward(nn.Linear(4, 4), nn.Linear(4, 2)), (4,), "the model (_OwnForward)"),
    (nn.Sequential(_shared, nn.ReLU(), _shared), (4,), "module '2' (Linear): it appears twice"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(4, 2)), (1, 6, 6), "module '2' (Linear): its input"),
])
def test_unsupported_models_are_named(model, shape, message):
    with pytest.raises(GlobscopeError, match="re-basin: cannot permute") as e:
        permutation_spec(model, torch.zeros((1,) + shape))
    assert message in str(e.value)


class _RolledLinear(nn.Linear):
    """Claims to be a Linear but pairs output i with weight row i-1: its units are not permutable."""

    def forward(self, x):
        return F.linear(x, self.weight.roll(1, 0), self.bias)


def test_a_permutation_that_changes_the_function_is_an_error():
    def factory():
        return nn.Sequential(nn.Flatten(), _RolledLinear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    a, b = _state(factory, 0), _state(factory, 1)
    with pytest.raises(GlobscopeError, match=r"does not compute B's function .* permuting P_1 alone"):
        rebasin(factory, a, b, _data("mlp"))
