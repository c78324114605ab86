"""Checkpoint sets: formats real training code writes, safety, clear errors, indexing, streaming."""

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from globscope.checkpoints import CheckpointSet, extract_state_dict, index_folder, read_file
from globscope.errors import GlobscopeError
from globscope.layout import ParameterLayout
from globscope.tasks import models


def _state(seed, cnn=False):
    torch.manual_seed(seed)
    net = models.small_cnn() if cnn else models.mlp(6, (5,), 3)
    return net.state_dict()


def test_every_saved_form_gives_the_same_vector(tmp_path):
    state = _state(0, cnn=True)
    layout = ParameterLayout.from_module(models.small_cnn())
    optim = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save(state, tmp_path / "bare.pt")
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": optim}, tmp_path / "msd.pth")
    torch.save({"model": state, "optimizer": optim}, tmp_path / "model.pt")
    # PyTorch Lightning: state_dict nested, keys prefixed by the LightningModule attribute
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in state.items()},
                "optimizer_states": [optim], "lr_schedulers": [], "callbacks": {}}, tmp_path / "light.ckpt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "st.safetensors")
    np.savez(tmp_path / "np.npz", **{k: v.numpy() for k, v in state.items()})
    ref = layout.flatten(state)
    for name, prefix in [("bare.pt", None), ("msd.pth", None), ("model.pt", None), ("light.ckpt", "model."),
                         ("dp.pt", None), ("st.safetensors", None), ("np.npz", None)]:
        got = extract_state_dict(read_file(tmp_path / name), prefix, source=name)
        assert np.array_equal(layout.flatten(got, source=name), ref), name
        assert torch.equal(got["1.running_var"], state["1.running_var"]), name


class _Evil:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    evil = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(2), "payload": _Evil()}
    if how == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    # the payload really runs under a plain unpickler (so the test can fail) ...
    probe = tmp_path / "probe"
    _Evil.marker = probe
    pickle.loads(pickle.dumps(_Evil()))
    assert probe.exists()
    # ... but never under ours
    with pytest.raises(GlobscopeError, match="evil.pt: refused to load"):
        read_file(evil)
    assert not marker.exists()


def test_torch_save_of_a_whole_module_is_refused(tmp_path):
    torch.save(models.mlp(2, (2,), 2), tmp_path / "module.pt")
    with pytest.raises(GlobscopeError, match="module.pt: refused to load"):
        read_file(tmp_path / "module.pt")


@pytest.mark.parametrize("content, message", [
    (None, "checkpoint file not found"),
    (b"this is not a checkpoint", "unreadable checkpoint"),
])
def test_missing_and_unreadable_files_are_named(tmp_path, content, message):
    p = tmp_path / "A" / "epoch_1.pt"
    p.parent.mkdir()
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(GlobscopeError) as e:
        read_file(p)
    assert str(p) in str(e.value) and message in str(e.value)


def _write_set(root, n_runs=2, n_epochs=3):
    for r in "AB"[:n_runs]:
        (root / r).mkdir(parents=True)
        for e in range(1, n_epochs + 1):
            torch.save(_state(hash((r, e)) % 1000), root / r / f"epoch_{e}.pt")


def test_index_orders_runs_and_epochs_numerically(tmp_path):
    _write_set(tmp_path, n_epochs=11)
    cs = index_folder(tmp_path, task="digits-mlp")
    assert [c.file for c in cs.checkpoints[:3]] == ["A/epoch_1.pt", "A/epoch_2.pt", "A/epoch_3.pt"]
    assert cs.checkpoints[10].file == "A/epoch_11.pt"
    assert cs.runs == ["A", "B"] and len(cs) == 22
    again = CheckpointSet.open(tmp_path)
    assert [c.to_dict() for c in again.checkpoints] == [c.to_dict() for c in cs.checkpoints]
    assert again.task == "digits-mlp"


def test_streamed_memmap_equals_in_memory(tmp_path):
    _write_set(tmp_path / "set")
    cs = index_folder(tmp_path / "set")
    W, buffers = cs.load_weights()
    Wm, _ = cs.load_weights(out=tmp_path / "W.npy")
    assert isinstance(Wm, np.memmap)
    assert np.array_equal(np.load(tmp_path / "W.npy", mmap_mode="r"), W)
    assert W.shape == (6, cs.layout().n_params) and W.dtype == np.float32
    assert np.array_equal(W[4], cs.layout().flatten(torch.load(tmp_path / "set/B/epoch_2.pt")))


def test_architecture_mismatch_inside_a_set_names_file_and_key(tmp_path):
    _write_set(tmp_path)
    bad = _state(0)
    bad["1.weight"] = torch.zeros(5, 7)
    torch.save(bad, tmp_path / "B" / "epoch_2.pt")
    cs = index_folder(tmp_path)
    with pytest.raises(GlobscopeError) as e:
        cs.load_weights()
    assert "B/epoch_2.pt" in str(e.value) and "'1.weight' has shape (5, 7)" in str(e.value)


def test_nan_weights_name_file_and_parameter(tmp_path):
    _write_set(tmp_path, n_runs=1)
    bad = _state(0)
    bad["3.weight"][0, 0] = float("nan")
    torch.save(bad, tmp_path / "A" / "epoch_3.pt")
    with pytest.raises(GlobscopeError, match=r"A/epoch_3.pt: parameter '3.weight' holds NaN"):
        index_folder(tmp_path).load_weights()


def test_empty_and_missing_manifests(tmp_path):
    with pytest.raises(GlobscopeError, match="no manifest.json; index the folder"):
        CheckpointSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": []}))
    with pytest.raises(GlobscopeError, match="empty checkpoint set"):
        CheckpointSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(GlobscopeError, match="manifest must be a JSON object"):
        CheckpointSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": [{"file": "A/e.pt", "run": "A",
                                                                          "epoch": "three"}]}))
    with pytest.raises(GlobscopeError, match=r"entry 0 \(A/e.pt\): 'epoch' must be an integer"):
        CheckpointSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(GlobscopeError, match="unreadable manifest"):
        CheckpointSet.open(tmp_path)
    with pytest.raises(GlobscopeError, match="no checkpoint files"):
        index_folder(tmp_path)


def test_index_in_memory_writes_nothing(tmp_path):
    _write_set(tmp_path)
    cs = index_folder(tmp_path, save=False)
    assert len(cs) == 6 and not (tmp_path / "manifest.json").exists()
