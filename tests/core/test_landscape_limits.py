"""The landscape stage at its limits, with inputs made as a user makes them: BatchNorm checkpoints
that hold parameters only, a manifold whose state holds NaN, bad margins, grids too large for the
machine (refused at once, with the estimate), the explicit flag for huge jobs, a later step that
fails after the field is written, and progress without a terminal."""

import json
import logging
import math
import time
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

from globscope import stages
from globscope.cli import main
from globscope.errors import Aborted, GlobscopeError
from globscope.landscape.limits import MEMORY_PER_POINT, estimate
from globscope.landscape.progress import LogProgress
from globscope.landscape.store import CACHE_DIR
from globscope.manifolds import load_manifold
from globscope.settings import HUGE_FRACTION, HUGE_POINTS, LandscapeSettings
from globscope.tasks import Task, datasets
from globscope.vtkxml import read_field

TASK = "tests.core.test_landscape_limits:bn_mlp_task"


def bn_mlp_task() -> Task:
    """A user's task: an MLP with BatchNorm on the digits (named ``module:callable``)."""
    return Task(TASK, lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                            nn.Linear(16, 10)), datasets.digits)


def cli(capsys, *args):
    """``globscope ARGS`` in this process: (exit code, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("globscope: error: ") and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture(scope="module")
def user_set(tmp_path_factory):
    """Two runs of three checkpoints of the BatchNorm MLP, trained a little, saved as many training
    scripts save them: ``named_parameters()`` only (no running_mean/var, no num_batches_tracked);
    indexed and fitted with the command line."""
    root = tmp_path_factory.mktemp("bnset")
    task = bn_mlp_task()
    train = task.train_data
    for run in ("A", "B"):
        torch.manual_seed(ord(run))
        model = task.make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        (root / "zoo" / run).mkdir(parents=True)
        for epoch in range(1, 4):
            for s in range(0, len(train), 128):
                opt.zero_grad()
                task.loss_fn(model(train.x[s:s + 128]), train.y[s:s + 128]).backward()
                opt.step()
            torch.save({n: p.detach().clone() for n, p in model.named_parameters()},
                       root / "zoo" / run / f"epoch_{epoch}.pt")
    assert main(["index", str(root / "zoo"), "--task", TASK]) == 0
    assert main(["fit", str(root / "zoo"), "--method", "pca", "--out", str(root / "manifold.pt")]) == 0
    return root


def recomputed_loss(task: Task, params: dict, calibration: int = LandscapeSettings.calibration_size) -> float:
    """Independent truth: the model's BatchNorm statistics from one training batch (as
    torch.optim.swa_utils.update_bn leaves them), then evaluated."""
    model = task.make_model()
    model.load_state_dict(params, strict=False)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None  # the cumulative average: one batch's mean and unbiased variance
    model.train()
    with torch.no_grad():
        model(task.train_data.x[:calibration])
    return task.evaluate(model)[0]


def test_parameters_only_batchnorm_checkpoints_with_the_default_recompute(user_set, tmp_path, capsys):
    assert "0.running_mean" not in torch.load(user_set / "zoo/A/epoch_1.pt")  # what the user has
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                   for k in torch.load(user_set / "zoo/A/epoch_1.pt"))
    rc, out, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--resolution", 6,
                       "--out", tmp_path)
    assert rc == 0, err
    assert "fidelity at the 6 input models" in out
    F = read_field(tmp_path / "landscape.vti", "loss")[0]
    assert F.shape == (6, 6) and np.isfinite(F).all()
    fid = json.loads((tmp_path / "landscape.json").read_text())["fidelity"]
    assert fid["direct_bn"] == "recompute"
    task = bn_mlp_task()
    direct = [recomputed_loss(task, torch.load(user_set / f"zoo/{r}/epoch_{e}.pt")) for r in "AB" for e in (1, 2, 3)]
    assert fid["direct_loss"] == pytest.approx(direct, rel=1e-4)


def test_bn_reference_without_statistics_names_the_checkpoint_before_any_work(user_set, tmp_path, capsys):
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--resolution", 6,
                     "--bn", "reference", "--out", tmp_path)
    line = one_error_line(err)
    assert rc == 2
    assert str(user_set / "zoo/A/epoch_1.pt") in line and "6 of 6 checkpoints" in line
    assert "--bn recompute" in line and "needs none" in line
    assert not (tmp_path / CACHE_DIR).exists()  # refused before the first chunk


def test_a_wrong_shape_buffer_is_refused_at_load_before_any_work(user_set, tmp_path, capsys):
    """A checkpoint whose BatchNorm statistics do not fit the model (saved from a wider layer) is
    named when the set is read, before the first chunk (it used to crash the fidelity step)."""
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(user_set / "zoo", zoo)
    for f in sorted(zoo.glob("*/epoch_*.pt")):
        state = torch.load(f)
        width = 8 if f == zoo / "B/epoch_2.pt" else 16
        state.update({"2.running_mean": torch.zeros(width), "2.running_var": torch.ones(width),
                      "2.num_batches_tracked": torch.tensor(1)})
        torch.save(state, f)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--set", zoo, "--task", TASK,
                     "--resolution", 5, "--out", out)
    line = one_error_line(err)
    assert rc == 2 and str(zoo / "B/epoch_2.pt") in line and "'2.running_mean' has shape (8,)" in line
    assert not (out / CACHE_DIR).exists()


def test_a_failing_later_step_keeps_the_field_and_names_the_step(user_set, tmp_path, capsys, monkeypatch):
    """The fidelity step runs after the field is written: when it fails (here a fault injected into
    it), the field and landscape.json stay on disk and the one line says which step failed."""
    from globscope.errors import GlobscopeError
    from globscope.landscape import driver

    def broken(*args, **kwargs):
        raise GlobscopeError("evaluating the input models: out of memory")

    monkeypatch.setattr(driver, "fidelity", broken)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--resolution", 5,
                     "--out", out)
    line = one_error_line(err)
    assert rc == 2
    assert "the fidelity step failed" in line and "out of memory" in line and str(out / "landscape.vti") in line
    assert read_field(out / "landscape.vti", "loss")[0].shape == (5, 5)
    record = json.loads((out / "landscape.json").read_text())
    assert "fidelity" not in record and record["files"] == ["landscape.vti"] and record["task"] == TASK


def test_a_manifold_whose_state_holds_nan_is_named_with_what_is_wrong(user_set, tmp_path, capsys):
    man = load_manifold(user_set / "manifold.pt")
    man.estimator_.components_[1, 7] = np.nan
    bad = man.save(tmp_path / "diverged.pt")
    rc, _, err = cli(capsys, "--no-progress", "landscape", bad, "--set", user_set / "zoo", "--resolution", 6,
                     "--out", tmp_path / "out")
    line = one_error_line(err)
    assert rc == 2 and str(bad.resolve()) in line
    assert "state holds NaN (estimator.components_)" in line and "6 of 6 models" in line and "refit" in line
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_holding_nan_is_named_not_the_manifold(user_set, tmp_path, capsys):
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(user_set / "zoo", zoo)
    state = torch.load(zoo / "A/epoch_3.pt")
    state["1.weight"][0, 0] = float("nan")
    torch.save(state, zoo / "A/epoch_3.pt")
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--set", zoo, "--resolution", 6,
                     "--out", tmp_path / "out")
    line = one_error_line(err)
    assert rc == 2 and f"{zoo / 'A/epoch_3.pt'}: parameter '1.weight' holds NaN or Inf" in line


@pytest.mark.parametrize("margin, message", [
    ("nan", "margin must be a finite fraction >= 0 of the models' box, got nan"),
    ("inf", "margin must be a finite fraction >= 0 of the models' box, got inf"),
    ("-0.5", "margin must be a finite fraction >= 0 of the models' box, got -0.5"),
    ("1e308", "latent grid: margin 1e+308 widens the models' box"),
])
def test_bad_margins_are_named_as_margins(user_set, tmp_path, capsys, margin, message):
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--resolution", 6,
                     "--margin", margin, "--out", tmp_path)
    assert rc == 2 and message in one_error_line(err)
    assert "spacing" not in err


def test_settings_name_what_is_wrong():
    with pytest.raises(GlobscopeError, match="margin must be a finite fraction"):
        LandscapeSettings(margin=math.nan)
    with pytest.raises(GlobscopeError, match="resolution must be whole numbers of at least 2"):
        LandscapeSettings(resolution=2.5)
    with pytest.raises(GlobscopeError, match="allow_huge must be True or False"):
        LandscapeSettings(allow_huge="yes")


@pytest.fixture(scope="module")
def manifolds(user_set):
    """The user's set fitted in 2, 3 and 4 latent dimensions."""
    paths = {2: user_set / "manifold.pt"}
    for d in (3, 4):
        paths[d] = user_set / f"manifold{d}.pt"
        assert main(["fit", str(user_set / "zoo"), "--method", "pca", "--dim", str(d), "--out", str(paths[d])]) == 0
    return paths


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_huge_resolutions_are_refused_at_once_with_the_estimate(manifolds, tmp_path, capsys, dim):
    n = 100000 ** dim
    tracemalloc.start()
    t0 = time.perf_counter()
    rc, _, err = cli(capsys, "landscape", manifolds[dim], "--resolution", 100000, "--out", tmp_path)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    line = one_error_line(err)
    assert rc == 2 and seconds < 5 and peak < 50e6  # no set-up, nothing allocated for the grid
    assert "too large for this machine" in line and f"{'×'.join(['100000'] * dim)} = {n:,} grid points" in line
    assert "of memory (" in line and " available)" in line and f"free at {tmp_path})" in line
    assert "lower --resolution (about" in line
    assert not any(tmp_path.iterdir())


def test_the_estimate_counts_stored_chunks_and_a_measured_speed(user_set, tmp_path, capsys):
    """After a run in the same folder: its chunks need no more disk, and its speed times a bigger job."""
    settings = LandscapeSettings(resolution=6, chunk_points=8)
    before = estimate(settings, 2, tmp_path, TASK)
    assert before.stored_points == 0 and before.seconds is None
    stages.landscape(user_set / "manifold.pt", tmp_path, settings)
    again = estimate(settings, 2, tmp_path, TASK)
    assert again.stored_points == 36 and again.disk < before.disk
    big = estimate(settings.replace(resolution=100000), 2, tmp_path, TASK)
    assert big.seconds is not None and big.seconds > 3600
    with pytest.raises(GlobscopeError, match=r"~\d+(\.\d+)? (h|days) at the speed measured before"):
        big.check(allow_huge=True)


def huge_but_feasible_resolution(out) -> int:
    """A 2-D resolution whose job is huge on this machine but fits it (the middle of the range)."""
    probe = estimate(LandscapeSettings(resolution=1000), 2, out)
    assert probe.available_memory and probe.free_disk
    per_disk = probe.disk / probe.n_points
    fits = min(probe.available_memory / MEMORY_PER_POINT[2], probe.free_disk / per_disk)
    huge_from = min(HUGE_POINTS, HUGE_FRACTION * probe.available_memory / MEMORY_PER_POINT[2],
                    HUGE_FRACTION * probe.free_disk / per_disk)
    if fits < 1.2 * huge_from:
        pytest.skip("this machine has no room for a huge but feasible job")
    return math.isqrt(int((fits + huge_from) / 2))


def test_huge_but_feasible_runs_only_with_the_flag(user_set, tmp_path, capsys):
    r = huge_but_feasible_resolution(tmp_path)
    rc, _, err = cli(capsys, "--no-progress", "landscape", user_set / "manifold.pt", "--resolution", r,
                     "--out", tmp_path)
    line = one_error_line(err)
    assert rc == 2 and "huge landscape (" in line and "--allow-huge" in line and f"{r * r:,} grid points" in line
    assert not any(tmp_path.iterdir())
    # with the flag the job passes the check and starts; the caller stops it at its first batch
    tracemalloc.start()
    with pytest.raises(Aborted):
        stages.landscape(user_set / "manifold.pt", tmp_path, LandscapeSettings(resolution=r, allow_huge=True),
                         should_abort=lambda: True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200e6 and not (tmp_path / "landscape.vti").exists()


def test_progress_is_logged_without_a_terminal(user_set, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="globscope.landscape.progress")
    rc, _, err = cli(capsys, "landscape", user_set / "manifold.pt", "--resolution", 6, "--out", tmp_path)
    assert rc == 0, err
    lines = [r.getMessage() for r in caplog.records if r.name == "globscope.landscape.progress"]
    assert lines[0] == "landscape 36 points: started, 0 of 36 points done already"
    assert lines[-1].startswith("landscape 36 points: done, 36 points in ")


def test_log_progress_reports_at_its_interval():
    now = [0.0]
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger("globscope.landscape.progress")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        p = LogProgress("job", 1000, interval=60, clock=lambda: now[0])
        for t, frac in [(0, 0.2), (30, 0.3), (60, 0.5), (90, 0.6), (120, 0.8), (125, 1.0), (126, 1.0)]:
            now[0] = t
            p(frac)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    assert lines == ["job: started, 200 of 1,000 points done already",
                     "job: 50.0% (500 of 1,000 points), 5 points/s, about 100 s left",
                     "job: 80.0% (800 of 1,000 points), 5 points/s, about 40 s left",
                     "job: done, 800 points in 2 min (6 points/s)"]
