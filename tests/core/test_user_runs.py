"""Users' own runs as their tools write them: PyTorch Lightning's names, folders and checkpoint
dicts (Lightning itself is not installed: its on-disk format is a torch.save'd dict), and the
broken files real folders hold. Each case works, or fails in one line naming the file and the fix."""

import argparse
import io
import logging
import pickle
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
import torch

from globscope.checkpoints import MAX_REPORTED, CheckpointSet, extract_state_dict, index_folder, read_file
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


# -- Lightning's names and folders -------------------------------------------------------------------
def test_lightning_names_give_epoch_step_and_metrics_and_last_ckpt_is_not_doubled(tmp_path):
    folder = tmp_path / "checkpoints"
    states = [_lightning(folder / name, _state(e), e, s) for e, s, name in [
        (0, 45, "epoch=0-step=45.ckpt"), (1, 90, "epoch=1-step=90-val_loss=0.42.ckpt"),
        (2, 135, "epoch=2-step=135.ckpt")]]
    _lightning(folder / "last.ckpt", states[-1], 2, 135)  # save_last: a copy of the latest
    cs = index_folder(folder, prefix="model.")
    assert [(c.file, c.run, c.epoch, c.step) for c in cs.checkpoints] == [
        ("epoch=0-step=45.ckpt", "run", 0, 45), ("epoch=1-step=90-val_loss=0.42.ckpt", "run", 1, 90),
        ("epoch=2-step=135.ckpt", "run", 2, 135)]
    assert cs.checkpoints[1].metrics == {"val_loss": 0.42}
    W, _ = cs.load_weights()
    assert np.array_equal(W[2], cs.layout().flatten(states[2]))
    # save_top_k=1 kept only the best (epoch 0): last.ckpt is then the one record of epoch 2
    (folder / "epoch=1-step=90-val_loss=0.42.ckpt").unlink()
    (folder / "epoch=2-step=135.ckpt").unlink()
    cs = index_folder(folder, prefix="model.")
    assert [(c.file, c.epoch, c.step) for c in cs.checkpoints] == [("epoch=0-step=45.ckpt", 0, 45),
                                                                   ("last.ckpt", 2, 135)]


def test_lightning_logs_versions_are_runs_that_map_to_variants(tmp_path, capsys):
    for version, seed in [("version_0", 0), ("version_1", 10), ("version_10", 20)]:
        for e in range(2):
            _lightning(tmp_path / "lightning_logs" / version / "checkpoints" / f"epoch={e}-step={(e + 1) * 30}.ckpt",
                       _state(seed + e), e, (e + 1) * 30)
    # a logger's own name/version, and names without metric names (auto_insert_metric_name=False)
    _lightning(tmp_path / "mnist" / "lr0.1" / "checkpoints" / "0-30.ckpt", _state(30), 0, 30)
    cs = index_folder(tmp_path, prefix="model.", variants={"version_0": "lr=0.1", "version_1": "lr=0.01"})
    assert cs.runs == ["mnist/lr0.1", "version_0", "version_1", "version_10"]
    assert [c.variant for c in cs.checkpoints] == ["mnist/lr0.1", "lr=0.1", "lr=0.1", "lr=0.01", "lr=0.01",
                                                   "version_10", "version_10"]
    assert (cs.checkpoints[0].epoch, cs.checkpoints[0].step) == (0, 30)
    again = CheckpointSet.open(tmp_path)
    assert [c.to_dict() for c in again.checkpoints] == [c.to_dict() for c in cs.checkpoints]
    assert again.load_weights()[0].shape == (7, cs.layout().n_params)
    # the command line: --variant RUN=NAME, repeatable (NAME may hold "=")
    assert main(["index", str(tmp_path), "--prefix", "model.", "--variant", "version_1=lr=0.01",
                 "--variant", "mnist/lr0.1=mnist"]) == 0
    assert "in 4 runs (mnist/lr0.1, version_0, version_1, version_10)" in capsys.readouterr().out
    assert [c.variant for c in CheckpointSet.open(tmp_path).checkpoints][:4] == [
        "mnist", "version_0", "version_0", "lr=0.01"]
    with pytest.raises(GlobscopeError, match="no run 'version_2' to name a variant of; the runs are mnist/lr0.1, "
                                             "version_0, version_1, version_10"):
        index_folder(tmp_path, variants={"version_2": "x"})
    with pytest.raises(SystemExit):
        main(["index", str(tmp_path), "--variant", "version_0"])
    assert "--variant: 'version_0' is not RUN=NAME" in capsys.readouterr().err


def test_index_checks_the_task_at_once(tmp_path, capsys):
    _lightning(tmp_path / "A" / "epoch=0-step=1.ckpt", _state(0), 0, 1)
    with pytest.raises(GlobscopeError, match=r"task 'no_such_mod:task': cannot import"):
        index_folder(tmp_path, task="no_such_mod:task")
    assert main(["index", str(tmp_path), "--task", "no_such_mod:task"]) == 2
    err = capsys.readouterr().err
    assert "no_such_mod:task" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "manifest.json").exists()


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
def test_a_pickle_that_would_run_code_among_allowed_values_never_runs(tmp_path, zipfile, caplog):
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
    # indexing reads last.ckpt for its epoch: refused there too, so it is skipped with a warning
    torch.save(_state(0), tmp_path / "epoch_0.pt")
    with caplog.at_level(logging.WARNING, logger="globscope.checkpoints"):
        cs = index_folder(tmp_path, save=False)
    assert [c.file for c in cs.checkpoints] == ["epoch_0.pt"] and "last.ckpt: skipped" in caplog.text
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
