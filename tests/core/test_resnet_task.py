"""The built-in residual task ``fashion-resnet``: its architecture, its round trip through a flat
vector and a checkpoint file, and its landscape evaluation against a hand per-model loop."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from globscope import names
from globscope.checkpoints import read_file
from globscope.errors import GlobscopeError
from globscope.landscape.evaluation import BatchedEvaluator
from globscope.layout import ParameterLayout
from globscope.manifolds import make_manifold
from globscope.tasks import BUILTIN_TASKS, get_task, models


def _tiny_resnet_task(n_train=32, n_eval=48):
    """fashion-resnet on a few images: the first ``n_train`` are the calibration batch."""
    return dataclasses.replace(get_task("fashion-resnet"), n_train=n_train, n_eval=n_eval)


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, models.BasicBlock)]


def test_resnet_has_identity_and_projection_shortcuts_and_0_1_to_0_3_m_parameters():
    model = models.small_resnet()
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 <= n <= 300_000
    assert f"{n} parameters" in get_task("fashion-resnet").description
    blocks = _blocks(model)
    identity = [b for b in blocks if isinstance(b.shortcut, nn.Identity)]
    projection = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert identity and projection
    for b in projection:  # a 1×1 convolution with the block's stride, then BatchNorm
        conv, bn = b.shortcut
        assert conv.kernel_size == (1, 1) and conv.stride == b.conv1.stride and isinstance(bn, nn.BatchNorm2d)
    for b in identity:
        assert b.conv1.stride == (1, 1) and b.conv1.in_channels == b.conv2.out_channels
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    assert isinstance(model[-3], nn.AdaptiveAvgPool2d) and isinstance(model[-1], nn.Linear)


def test_basic_block_adds_its_shortcut():
    torch.manual_seed(0)
    for b in (models.BasicBlock(4, 4), models.BasicBlock(4, 6, stride=2)):
        b.eval()
        x = torch.randn(2, 4, 8, 8)
        body = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x)))))
        torch.testing.assert_close(b(x), torch.relu(body + b.shortcut(x)))


def test_flattened_and_loaded_resnet_computes_the_same_output(tmp_path):
    torch.manual_seed(1)
    task = _tiny_resnet_task()
    model = task.make_model()
    model.train()
    model(task.train_data.x)  # running statistics away from their initial values
    model.eval()
    torch.save(model.state_dict(), tmp_path / "epoch_1.pt")
    state = read_file(tmp_path / "epoch_1.pt")  # the project's safe loading (weights_only)
    layout = ParameterLayout.from_module(task.make_model())
    assert layout == task.layout and layout.n_params == sum(p.numel() for p in model.parameters())
    vector = layout.flatten(state)
    params = layout.unflatten(vector)
    assert set(params) == {n for n, _ in model.named_parameters()}
    buffers = {k: state[k] for k in layout.buffers}
    loaded = task.make_model()
    loaded.load_state_dict({**params, **buffers})
    loaded.eval()
    x = task.eval_data.x
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def _hand_recompute_loss(task, state, calib_x):
    """One model by hand: load the state dict, recompute BatchNorm statistics by one training-mode
    pass over the calibration batch (batch mean, unbiased variance), then evaluate in eval mode."""
    model = task.make_model()
    model.load_state_dict(state, strict=False)  # decoded weights: the buffers are recomputed
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(calib_x)
    return task.evaluate(model)


@pytest.mark.parametrize("formulation", ["auto", "vmap", "loop"])
def test_resnet_landscape_points_equal_a_hand_per_model_loop(formulation):
    task = _tiny_resnet_task()
    torch.manual_seed(2)
    W = torch.stack([torch.as_tensor(task.layout.flatten(task.make_model().state_dict())) for _ in range(4)])
    manifold = make_manifold("pca", dim=2).fit(W.numpy())
    Z = np.array([[0.0, 0.0], [0.5, -0.3], [-1.0, 0.2]], dtype=np.float32) * manifold.transform(W.numpy()).std(0)
    decoded = torch.as_tensor(manifold.inverse_transform(Z), dtype=torch.float32)
    ev = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation=formulation,
                          max_batch_models=2)  # two batches, the second ragged
    loss, acc = ev.evaluate(decoded)
    assert ev.formulation in ("vmap", "loop")  # not a plain Sequential CNN: neither grouped nor stacked
    calib_x = task.train_data.x[:32]
    for i, w in enumerate(decoded):
        ref_loss, ref_acc = _hand_recompute_loss(task, task.layout.unflatten(w), calib_x)
        assert abs(loss[i] - ref_loss) <= 1e-5
        assert acc[i] == pytest.approx(ref_acc)


def test_fashion_resnet_is_a_built_in_task_of_the_command_line(capsys):
    assert "fashion-resnet" in BUILTIN_TASKS and "fashion-resnet" in names.BUILTIN_TASKS
    from globscope.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["zoo", "fashion-resnet", "--out", "x"]).task == "fashion-resnet"
    with pytest.raises(SystemExit):
        parser.parse_args(["zoo", "--help"])
    assert "fashion-resnet" in capsys.readouterr().out


def test_rebasin_refuses_the_resnet_in_one_line_naming_the_block():
    from globscope.validation.rebasin import permutation_spec

    task = _tiny_resnet_task()
    with pytest.raises(GlobscopeError) as e:
        permutation_spec(task.make_model(), task.train_data.x[:1])
    msg = str(e.value)
    assert "\n" not in msg and "'3' (BasicBlock)" in msg and "residual" in msg


def test_every_resnet_batchnorm_is_recomputed():
    """The stem's, both of each block's and the projections' BatchNorms: 11 layers, all recomputed."""
    task = _tiny_resnet_task()
    torch.manual_seed(3)
    model = task.make_model()
    w = torch.as_tensor(task.layout.flatten(model.state_dict()))[None]
    stats = BatchedEvaluator(task, "cpu", bn="recompute", calibration_size=32, formulation="vmap").statistics(w)
    wanted = {k for k, v in model.named_buffers() if v.is_floating_point()}
    assert set(stats) == wanted and len(wanted) == 2 * 11
    assert "5.shortcut.1.running_var" in wanted


def test_the_rebasin_experiment_refuses_the_resnet_before_training(tmp_path, monkeypatch):
    from globscope.settings import RebasinSettings
    from globscope.validation import rebasin_experiment as rx

    monkeypatch.setattr(rx, "train_runs", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(GlobscopeError, match=r"cannot permute module '3' \(BasicBlock\)"):
        rx.rebasin_experiment(tmp_path / "rb", RebasinSettings(task="fashion-resnet", pairs=1))
