"""Users' own runs as their tools write them: PyTorch Lightning's names, folders and checkpoint
dicts (Lightning itself is not installed: its on-disk format is a torch.save'd dict), and the
broken files real folders hold. Each case works, or fails in one line naming the file and the fix."""

import argparse
import io
import pickle
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
import torch

from globscope.checkpoints import MAX_REPORTED, extract_state_dict, index_folder, read_file
from globscope.cli import main
from globscope.errors import GlobscopeError
from globscope.layout import ParameterLayout
from globscope.tasks import get_task, models


def _state(seed, cnn=False):
    torch.manual_seed(seed)
    return (models.small_cnn() if cnn else models.mlp(6, (5,), 3)).state_dict()


HPARAMS = {  # what save_hyperparameters() records from a typical LightningModule's arguments
    "lr": np.float64(1e-3), "hidden": np.int64(5), "dropout": np.float32(0.1), "dtype": np.dtype("float32"),
    "scalar_type": np.float32, "class_weights": np.array([0.2, 0.8]), "data_dir": Path("/data/digits"),
    "cache": PurePosixPath("/tmp/cache"), "args": argparse.Namespace(seed=1, batch_size=64),
}


def _lightning(path, state, epoch, step, hparams=HPARAMS, **extra):
    """A checkpoint laid out as Lightning 2.x writes it (the model is the module's ``model``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "global_step": step, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in state.items()},
                "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": epoch}}}},
                "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": {
                    "best_model_score": None, "best_model_path": str(path), "dirpath": str(path.parent),
                    "kth_value": torch.tensor(float("inf"))}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999),
                                                                    "params": [0, 1, 2, 3]}]}],
                "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hparams, **extra}, path)
    return state


# -- what Lightning checkpoints hold -----------------------------------------------------------------
def test_hyper_parameters_with_numpy_values_and_paths_load(tmp_path):
    state = _lightning(tmp_path / "epoch=0-step=10.ckpt", _state(0), 0, 10)
    got = read_file(tmp_path / "epoch=0-step=10.ckpt")
    hp = got["hyper_parameters"]
    assert hp["lr"] == 1e-3 and hp["dtype"] == np.dtype("float32") and hp["scalar_type"] is np.float32
    assert np.array_equal(hp["class_weights"], [0.2, 0.8]) and hp["data_dir"] == Path("/data/digits")
    assert hp["args"].batch_size == 64
    layout = ParameterLayout.from_state_dict(state)
    assert np.array_equal(layout.flatten(extract_state_dict(got, "model.")), layout.flatten(state))


def test_a_path_saved_on_windows_reads_as_the_path_it_names(tmp_path):
    buf = io.BytesIO()  # a concrete WindowsPath cannot be made here: write what Windows writes
    torch.save({"w": torch.ones(2), "data_dir": PureWindowsPath(r"C:\data")}, buf,
               _use_new_zipfile_serialization=False, pickle_protocol=2)
    data = buf.getvalue().replace(b"pathlib\nPureWindowsPath\n", b"pathlib\nWindowsPath\n")
    assert b"pathlib\nWindowsPath\n" in data
    (tmp_path / "win.pt").write_bytes(data)
    assert read_file(tmp_path / "win.pt")["data_dir"] == PureWindowsPath(r"C:\data")


class Config:  # a user's class in the hyper-parameters: torch cannot know it is harmless
    def __init__(self):
        self.depth = 3


def test_a_refused_file_names_what_it_holds_and_what_to_do(tmp_path):
    _lightning(tmp_path / "epoch=0-step=1.ckpt", _state(0), 0, 1, hparams={**HPARAMS, "config": Config()})
    with pytest.raises(GlobscopeError) as e:
        read_file(tmp_path / "epoch=0-step=1.ckpt")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'epoch=0-step=1.ckpt'}: refused to load: it holds pickled ")
    assert "test_user_runs.Config," in msg and "numpy" not in msg.split("which could")[0]
    assert "if you trust the file, save its state dict alone" in msg
    assert "\n" not in msg and "\x1b" not in msg and "Weights only" not in msg


class _Evil:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zipfile", [True, False])
def test_a_pickle_that_would_run_code_among_allowed_values_never_runs(tmp_path, zipfile):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    ckpt = {"epoch": 0, "global_step": 1, "state_dict": _state(0), "hyper_parameters": {**HPARAMS, "x": _Evil()}}
    torch.save(ckpt, tmp_path / "last.ckpt", _use_new_zipfile_serialization=zipfile)
    assert not marker.exists()
    probe = tmp_path / "probe"  # the payload really runs under a plain unpickler (so the test can fail)
    _Evil.marker = probe
    pickle.loads(pickle.dumps(_Evil()))
    assert probe.exists()
    with pytest.raises(GlobscopeError, match=r"last.ckpt: refused to load: it holds pickled \S*open"):
        read_file(tmp_path / "last.ckpt")
    assert not marker.exists()


# -- files that do not fit, and broken files -----------------------------------------------------------
def _cnn_set(root, n=3):
    root.mkdir(parents=True, exist_ok=True)
    for e in range(n):
        torch.save(_state(e, cnn=True), root / f"epoch_{e}.pt")


def test_a_batchnorm_buffer_of_the_wrong_shape_is_named_at_load(tmp_path, capsys):
    _cnn_set(tmp_path)
    bad = _state(5, cnn=True)
    bad["5.running_mean"] = torch.zeros(17)
    torch.save(bad, tmp_path / "epoch_2.pt")
    expected = (f"{tmp_path / 'epoch_2.pt'}: architecture mismatch, buffer '5.running_mean' has shape (17,), "
                "expected (16,)")
    cs = index_folder(tmp_path)
    for layout in (get_task("fashion-cnn").layout, None):  # the task's, and one inferred from the set
        with pytest.raises(GlobscopeError) as e:
            cs.load_weights(layout)
        assert str(e.value) == expected
    assert main(["fit", str(tmp_path), "--task", "fashion-cnn", "--method", "pca", "--out",
                 str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err == f"globscope: error: {expected}\n"


def test_every_bad_file_of_a_set_is_named_in_one_error(tmp_path):
    _cnn_set(tmp_path, n=6)
    good = (tmp_path / "epoch_5.pt").read_bytes()
    (tmp_path / "epoch_0.pt").write_bytes(b"")  # the first one too: the layout comes from the next
    (tmp_path / "epoch_1.pt").write_bytes(good[: len(good) // 2])
    wrong = _state(1, cnn=True)
    wrong["9.weight"] = torch.zeros(10, 5)
    torch.save(wrong, tmp_path / "epoch_3.pt")
    _lightning(tmp_path / "epoch_4.pt", _state(4, cnn=True), 4, 4, hparams={"config": Config()})
    with pytest.raises(GlobscopeError) as e:
        index_folder(tmp_path).load_weights()
    lines = str(e.value).splitlines()
    assert lines[0] == f"{tmp_path}: 4 of 6 checkpoints are unusable:"
    assert [line.split(": ", 1)[0].strip() for line in lines[1:]] == [
        str(tmp_path / f"epoch_{i}.pt") for i in (0, 1, 3, 4)]
    assert "truncated or not a PyTorch file (0 bytes)" in lines[1] and "truncated" in lines[2]
    assert "parameter '9.weight' has shape (10, 5)" in lines[3] and "refused to load" in lines[4]


def test_reading_stops_after_a_screenful_of_bad_files(tmp_path):
    for e in range(MAX_REPORTED + 2):
        (tmp_path / f"epoch_{e}.pt").write_bytes(b"")
    with pytest.raises(GlobscopeError) as e:
        index_folder(tmp_path).load_weights()
    lines = str(e.value).splitlines()
    assert lines[0] == (f"{tmp_path}: {MAX_REPORTED} of {MAX_REPORTED + 2} checkpoints are unusable "
                        f"(the first {MAX_REPORTED} found; 2 not checked):")
    assert len(lines) == MAX_REPORTED + 1


def _truncations(good: bytes, legacy: bytes):
    return {"empty": b"", "half": good[: len(good) // 2], "tail cut": good[:-10], "header only": good[:100],
            "legacy half": legacy[: len(legacy) // 2], "text": b"epoch 3, loss 0.1\n"}


@pytest.mark.parametrize("case", list(_truncations(b"", b"")))
def test_truncated_and_empty_files_say_so(tmp_path, case):
    state = _state(0)
    torch.save(state, tmp_path / "good.pt")
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    bad = tmp_path / "epoch_1.pt"
    bad.write_bytes(_truncations((tmp_path / "good.pt").read_bytes(), buf.getvalue())[case])
    with pytest.raises(GlobscopeError) as e:
        read_file(bad)
    assert str(e.value) == (f"{bad}: unreadable checkpoint: truncated or not a PyTorch file ({bad.stat().st_size} "
                            "bytes); copy it again or remove it from the set")
    assert e.value.__cause__ is not None  # what torch said, for -v
