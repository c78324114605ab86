import numpy as np
import pytest
import torch

from globscope.errors import GlobscopeError
from globscope.layout import ParameterLayout
from globscope.tasks import models


def _randomised(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        for b in module.buffers():
            if b.is_floating_point():
                b.copy_(torch.rand(b.shape, generator=g))
    return module


def test_cnn_layout_excludes_batchnorm_buffers():
    net = models.small_cnn()
    layout = ParameterLayout.from_module(net)
    assert layout.n_params == sum(p.numel() for p in net.parameters())
    assert all("running" not in n and "num_batches" not in n for n in layout.names)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(layout.buffers)


def test_flatten_unflatten_round_trip_is_bit_exact():
    net = _randomised(models.small_cnn())
    layout = ParameterLayout.from_module(net)
    state = net.state_dict()
    v = layout.flatten(state)
    assert v.dtype == np.float32 and v.shape == (layout.n_params,)
    back = layout.unflatten(v)
    for name in layout.names:
        assert back[name].dtype == state[name].dtype
        assert torch.equal(back[name], state[name])  # bit for bit
    # the vector is the parameters concatenated in named_parameters() order
    ref = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    assert np.array_equal(v, ref)


def test_unflatten_batch_adds_leading_dimension():
    layout = ParameterLayout.from_module(models.mlp(4, (3,), 2))
    batch = np.arange(5 * layout.n_params, dtype=np.float32).reshape(5, -1)
    out = layout.unflatten(batch)
    assert out["1.weight"].shape == (5, 3, 4)
    assert torch.equal(out["1.weight"][2].reshape(-1), torch.from_numpy(batch[2, :12]))


def test_layout_serialises():
    layout = ParameterLayout.from_module(models.small_cnn())
    assert ParameterLayout.from_dict(layout.to_dict()) == layout


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("1.weight"), "missing parameter '1.weight'"),
    (lambda s: s.__setitem__("9.weight", torch.zeros(2)), "unexpected parameter '9.weight'"),
    (lambda s: s.__setitem__("1.weight", torch.zeros(3, 3)), "parameter '1.weight' has shape (3, 3)"),
    (lambda s: s["3.bias"].__setitem__(0, float("nan")), "parameter '3.bias' holds NaN or Inf"),
    (lambda s: s["3.bias"].__setitem__(1, float("inf")), "parameter '3.bias' holds NaN or Inf"),
])
def test_mismatches_name_the_source_and_parameter(mutate, message):
    net = models.mlp(4, (3,), 2)
    layout = ParameterLayout.from_module(net)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    mutate(state)
    with pytest.raises(GlobscopeError) as e:
        layout.flatten(state, source="ckpt/A/epoch_3.pt")
    assert "ckpt/A/epoch_3.pt" in str(e.value) and message in str(e.value)
