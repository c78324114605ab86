"""The landscape driver: outputs, resume after a kill, abort, torchrun (2 gloo processes), CLI."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from globscope import stages
from globscope.checkpoints import Checkpoint, CheckpointSet
from globscope.errors import Aborted
from globscope.landscape import LatentGrid, compute_landscape
from globscope.landscape.driver import CACHE_DIR
from globscope.manifolds import make_manifold
from globscope.settings import LandscapeSettings
from globscope.tasks import get_task
from globscope.vtkxml import read, read_field

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def make_set(root: Path, n_runs=2, n_steps=3, seed=0) -> CheckpointSet:
    """A small digits-mlp checkpoint set: random models drifting along short paths (no training)."""
    task = get_task("digits-mlp")
    torch.manual_seed(seed)
    cks = []
    for r in range(n_runs):
        m = task.make_model()
        (root / f"R{r}").mkdir(parents=True, exist_ok=True)
        for s in range(n_steps):
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.3 * torch.randn_like(p))
            torch.save(m.state_dict(), root / f"R{r}/epoch_{s}.pt")
            cks.append(Checkpoint(file=f"R{r}/epoch_{s}.pt", run=f"R{r}", epoch=s, task="digits-mlp"))
    cs = CheckpointSet(root, cks, task="digits-mlp")
    cs.save()
    return cs


def fit_manifold(cs: CheckpointSet, path: Path, dim=2) -> Path:
    task = get_task("digits-mlp")
    W, _ = cs.load_weights(task.layout)
    man = make_manifold("pca", dim).fit(W)
    man.meta_ = {"task": "digits-mlp", "checkpoint_set": cs.root.name, "layout": task.layout.to_dict()}
    man.save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("land")
    cs = make_set(root / "zoo")
    return root, fit_manifold(cs, root / "manifold.pt")


FAST = LandscapeSettings(formulation="vmap", max_batch_models=16, chunk_points=32)


def _fields(out):
    return {k: read_field(Path(out) / "landscape.vti", k)[0] for k in ("loss", "log_loss", "accuracy", "distance")}


def test_outputs_and_fields_are_the_real_loss(setup, tmp_path):
    root, man_path = setup
    s = stages.landscape(man_path, tmp_path, FAST.replace(resolution=(7, 5), margin=0.2))
    F = _fields(tmp_path)
    assert F["loss"].shape == (7, 5)
    data = read(tmp_path / "landscape.vti")
    grid = LatentGrid.from_dict(s["grid"])
    np.testing.assert_allclose(data.grid.origin, grid.origin)
    np.testing.assert_allclose(data.grid.spacing, grid.spacing)
    # independent truth: decode one vertex, load it into the module, evaluate
    from globscope.manifolds import load_manifold

    man, task = load_manifold(man_path), get_task("digits-mlp")
    for ij in [(0, 0), (6, 4), (3, 2), (5, 1)]:
        z = np.array([[grid.origin[a] + ij[a] * grid.spacing[a] for a in range(2)]])
        model = task.make_model()
        model.load_state_dict(task.layout.unflatten(man.inverse_transform(z)[0]))
        loss, acc = task.evaluate(model)
        assert F["loss"][ij] == pytest.approx(loss, rel=1e-5)
        assert F["accuracy"][ij] == pytest.approx(acc)
        assert F["log_loss"][ij] == pytest.approx(np.log10(loss), rel=1e-5)
    assert (F["distance"] >= 0).all()
    j = json.loads((tmp_path / "landscape.json").read_text())
    assert j["non_finite_loss"]["total"] == 0 and j["n_models"] == 6
    fid = j["fidelity"]
    assert len(fid["direct_loss"]) == 6 and fid["field_vs_direct"]["mae"] >= 0
    # PCA's decoder is exact on the models' own plane only up to the discarded components; the
    # direct losses are those of the checkpoints themselves
    cs = CheckpointSet.open(root / "zoo")
    W, _ = cs.load_weights(task.layout)
    m0 = task.make_model()
    m0.load_state_dict(task.layout.unflatten(W[0]))
    assert fid["direct_loss"][0] == pytest.approx(task.evaluate(m0)[0], rel=1e-5)


def test_relative_checkpoint_set_is_resolved_next_to_the_manifold_only(setup, tmp_path, monkeypatch):
    """The manifold's relative ``checkpoint_set`` ("zoo") names the set beside the manifold file,
    even when the current directory has a ``zoo/`` of its own."""
    root, man_path = setup
    work = tmp_path / "elsewhere"
    make_set(work / "zoo", n_runs=1, n_steps=2, seed=7)  # a decoy with the same relative name
    monkeypatch.chdir(work)
    _, models = stages.manifold_inputs(Path("..") / os.path.relpath(man_path, tmp_path))  # a relative path
    W_true, _ = CheckpointSet.open(root / "zoo").load_weights(models.layout)
    np.testing.assert_array_equal(models.W, W_true)
    # an explicit set is the caller's, relative to the current directory
    _, decoy = stages.manifold_inputs(man_path, checkpoint_set="zoo")
    assert len(decoy.W) == 2


@pytest.mark.parametrize("dim", [3, 4])
def test_higher_dimensions(setup, tmp_path, dim):
    root, _ = setup
    man_path = fit_manifold(CheckpointSet.open(root / "zoo"), tmp_path / "m.pt", dim=dim)
    s = stages.landscape(man_path, tmp_path / "out", FAST.replace(resolution=3), checkpoint_set=root / "zoo")
    if dim == 3:
        assert s["files"] == ["landscape.vti"]
        assert read_field(tmp_path / "out/landscape.vti", "loss")[0].shape == (3, 3, 3)
    else:
        assert s["files"][0] == "landscape.npz" and len(s["files"]) == 4
        z = np.load(tmp_path / "out/landscape.npz")
        assert z["loss"].shape == (3, 3, 3, 3)
        for l in range(3):
            F, data = read_field(tmp_path / f"out/landscape_w{l:03d}.vti", "loss")
            np.testing.assert_array_equal(F, z["loss"][..., l])
            assert data.field_data["w"][0] == pytest.approx(s["grid"]["origin"][3] + l * s["grid"]["spacing"][3])


def test_factored_field_equals_the_vmap_field(setup, tmp_path):
    """PCA's affine head: the driver hands codes to the factored formulation; same field."""
    root, man_path = setup
    kw = LandscapeSettings(resolution=(6, 5), margin=0.3, max_batch_models=16, chunk_points=16)
    a = stages.landscape(man_path, tmp_path / "v", kw.replace(formulation="vmap"))
    b = stages.landscape(man_path, tmp_path / "f", kw.replace(formulation="factored"))
    assert a["engine"]["affine_head"] is None
    assert b["engine"]["formulation"] == "factored" and b["engine"]["affine_head"]["K"] == 2
    Fa, Fb = _fields(tmp_path / "v"), _fields(tmp_path / "f")
    np.testing.assert_allclose(Fb["loss"], Fa["loss"], rtol=1e-5)
    np.testing.assert_array_equal(Fb["accuracy"], Fa["accuracy"])
    np.testing.assert_array_equal(Fb["distance"], Fa["distance"])
    assert b["fidelity"]["field_vs_direct"]["mae"] == pytest.approx(a["fidelity"]["field_vs_direct"]["mae"], rel=1e-4)


class Blowup:
    """A stub manifold: weights grow as 10**x along latent x, overflowing float32 for x > 38."""

    dim = 2

    def __init__(self, w0):
        self.w0 = w0.astype(np.float64)
        self.n_features_in_ = len(w0)

    def inverse_transform(self, Z):
        Z = np.atleast_2d(Z)
        with np.errstate(over="ignore"):
            return (self.w0[None] * 10.0 ** Z[:, :1]).astype(np.float32)


def test_non_finite_losses_are_counted_not_hidden(tmp_path):
    task = get_task("digits-mlp")
    torch.manual_seed(0)
    w0 = task.layout.flatten(task.make_model().state_dict())
    Z = np.array([[0.0, 0.0], [40.0, 1.0]])
    s = compute_landscape(Blowup(w0), task, Z, tmp_path, FAST.replace(resolution=(9, 2), margin=0.0))
    F = read_field(tmp_path / "landscape.vti", "loss")[0]
    bad = ~np.isfinite(F)
    assert bad.any() and not bad[0].any()  # x = 0 is fine, the overflowing columns are not
    assert s["non_finite_loss"]["total"] == int(bad.sum())
    assert s["loss"]["max"] is not None and np.isfinite(s["loss"]["max"])


def test_abort_keeps_finished_chunks_and_rerun_reuses_them(setup, tmp_path):
    _, man_path = setup
    calls = []

    def should_abort():
        calls.append(1)
        return len(calls) > 5  # two batches per chunk: two chunks finish, then abort

    with pytest.raises(Aborted):
        stages.landscape(man_path, tmp_path, FAST.replace(resolution=10), should_abort=should_abort)
    key_dirs = list((tmp_path / CACHE_DIR).iterdir())
    assert len(key_dirs) == 1 and len(list(key_dirs[0].glob("chunk_*.npz"))) == 2
    s = stages.landscape(man_path, tmp_path, FAST.replace(resolution=10))
    assert s["chunks"] == {"total": 4, "reused": 2, "folder": str(key_dirs[0])}
    assert stages.landscape(man_path, tmp_path, FAST.replace(resolution=10))["chunks"]["reused"] == 4
    # a changed setting is a different key: nothing reused
    assert stages.landscape(man_path, tmp_path, FAST.replace(resolution=11))["chunks"]["reused"] == 0


def _user_task(eval_y_shift=0, train_scale=1.0, bn=False):
    """A user task ("module:callable" style: a name and data of its own), tiny."""
    from torch import nn

    from globscope.tasks import Split, Task

    rng = np.random.default_rng(0)
    xe, ye = rng.normal(size=(24, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 24)
    xt, yt = rng.normal(size=(16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16)
    data = (Split(train_scale * xt, yt), Split(xe, (ye + eval_y_shift) % 3))
    if bn:
        make = lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),  # noqa: E731
                                     nn.Linear(2 * 16, 3))
    else:
        make = lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 3))  # noqa: E731
    return Task("mypkg.tasks:make", make, lambda: data)


@pytest.mark.parametrize("bn", [False, True])
def test_store_key_covers_the_evaluation_and_calibration_data(tmp_path, bn):
    """A user task whose data changes with the same example count must not reuse stale chunks;
    with BatchNorm recompute the calibration batch (training data) counts too."""
    task = _user_task(bn=bn)
    torch.manual_seed(0)
    W = np.stack([task.layout.flatten(task.make_model().state_dict()) for _ in range(5)])
    man = make_manifold("pca", 2).fit(W)
    Z = man.transform(W)
    kw = dict(settings=FAST.replace(resolution=4), manifold_id="m")
    a = compute_landscape(man, task, Z, tmp_path, **kw)
    assert compute_landscape(man, _user_task(bn=bn), Z, tmp_path, **kw)["chunks"]["reused"] == 1  # same data
    b = compute_landscape(man, _user_task(eval_y_shift=1, bn=bn), Z, tmp_path, **kw)
    assert b["chunks"]["reused"] == 0 and b["key"] != a["key"]
    assert b["accuracy"] != a["accuracy"]
    if bn:
        c = compute_landscape(man, _user_task(train_scale=3.0, bn=bn), Z, tmp_path, **kw)
        assert c["chunks"]["reused"] == 0 and c["key"] not in (a["key"], b["key"])


RUN = """
import json, os, signal, sys
from pathlib import Path
from globscope import stages
from globscope.settings import LandscapeSettings
kill_after = int(sys.argv[3])  # chunks stored before the process kills itself (0: run to the end)
if len(sys.argv) > 5:  # stand-in for this process's timings: what ``auto`` gets to choose from
    from globscope.landscape.evaluation import BatchedEvaluator
    only = [tuple(c) for c in json.loads(sys.argv[5])]
    BatchedEvaluator.candidates = lambda self, codes=False: only

def progress(f):  # called after each batch; a chunk is stored after its last batch
    if kill_after and len(list(Path(sys.argv[2]).glob(".landscape-cache/*/chunk_*.npz"))) >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

s = stages.landscape(sys.argv[1], sys.argv[2], LandscapeSettings(resolution=24, formulation=sys.argv[4],
                     max_batch_models=16, chunk_points=32), progress=progress)
print(json.dumps(s["chunks"]))
"""


def _run(man_path, out, kill_after=0, formulation="vmap", candidates=None):
    extra = [json.dumps(candidates)] if candidates else []
    r = subprocess.run([sys.executable, "-c", RUN, str(man_path), str(out), str(kill_after), formulation, *extra],
                       env=ENV, capture_output=True, text=True, timeout=120)
    if kill_after:
        assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
        return None
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_resume_after_kill_equals_uninterrupted(setup, tmp_path):
    """The child kills itself (SIGKILL) from its progress hook once 3 chunks are stored:
    deterministic, whatever the machine's load."""
    _, man_path = setup
    out = tmp_path / "killed"
    _run(man_path, out, kill_after=3)
    assert len(list(out.glob(f"{CACHE_DIR}/*/chunk_*.npz"))) == 3 and not (out / "landscape.vti").exists()
    # resumed and uninterrupted runs in equal processes (same threads, same refitted manifold)
    assert _run(man_path, out)["reused"] == 3
    assert _run(man_path, tmp_path / "straight")["reused"] == 0
    a, b = _fields(out), _fields(tmp_path / "straight")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_with_auto_keeps_the_first_runs_engine_choice(setup, tmp_path):
    """``auto`` times its way to a formulation, thread count and data batch; a resumed run must
    not choose again (a loaded machine may time another winner) but reuse the first attempt's
    choice from store.json, so the field equals the uninterrupted run's bit for bit. The first
    attempt's and the uninterrupted run's timings are stood in for by one candidate each (the
    loop, 64 examples a pass); the resumed process, left to itself, would pick another one."""
    _, man_path = setup
    first = [["loop", 1, 64]]
    out = tmp_path / "killed"
    _run(man_path, out, kill_after=3, formulation="auto", candidates=first)
    store = json.loads(next(out.glob(f"{CACHE_DIR}/*/store.json")).read_text())
    assert store["engine"] == {"formulation": "loop", "threads": 1, "data_batch": 64, "batch_models": 16,
                               "codes": True}
    assert _run(man_path, out, formulation="auto", candidates=[["stacked", 1, 10 ** 6]])["reused"] == 3
    assert _run(man_path, tmp_path / "straight", formulation="auto", candidates=first)["reused"] == 0
    assert json.loads((out / "landscape.json").read_text())["engine"]["formulation"] == "loop"
    a, b = _fields(out), _fields(tmp_path / "straight")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_torchrun_two_gloo_processes_equal_one(setup, tmp_path):
    _, man_path = setup
    args = ["landscape", str(man_path), "--resolution", "12", "--formulation", "vmap",
            "--max-batch-models", "8", "--chunk-points", "16"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "globscope", "--no-progress", *args, "--out", str(tmp_path / "two")],
                       env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    j = json.loads((tmp_path / "two/landscape.json").read_text())
    assert j["engine"]["world_size"] == 2
    r = subprocess.run([sys.executable, "-m", "globscope", "--no-progress", *args, "--out", str(tmp_path / "one")],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _fields(tmp_path / "two"), _fields(tmp_path / "one")
    for k in a:  # equal processes (one thread each): bit for bit
        np.testing.assert_array_equal(a[k], b[k])


def test_cli_landscape_and_errors(setup, tmp_path, capsys):
    from globscope.cli import main

    _, man_path = setup
    assert main(["--no-progress", "landscape", str(man_path), "--resolution", "6", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "points/s" in out and "fidelity" in out and (tmp_path / "landscape.vti").is_file()
    assert main(["landscape", str(tmp_path / "missing.pt"), "--resolution", "6", "--out", str(tmp_path)]) == 2
    assert "manifold file not found" in capsys.readouterr().err


def test_bn_reference_field_uses_the_nearest_models_buffers(tmp_path):
    """A tiny BatchNorm CNN: each vertex is evaluated with the running statistics of its nearest
    input model; checked against nn.Module evaluation with those buffers loaded."""
    from torch import nn

    from globscope.landscape.grid import nearest_model
    from globscope.tasks import Split, Task

    rng = np.random.default_rng(0)
    data = [Split(rng.normal(size=(n, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, n)) for n in (32, 20)]
    task = Task("tiny-bn", lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                                                  nn.Linear(2 * 16, 3)), lambda: tuple(data))
    torch.manual_seed(1)
    models = [task.make_model() for _ in range(5)]
    for m in models:
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
    W = np.stack([task.layout.flatten(m.state_dict()) for m in models])
    buffers = [{k: v for k, v in m.state_dict().items() if k in task.layout.buffers} for m in models]
    man = make_manifold("pca", 2).fit(W)
    Z = man.transform(W)
    s = compute_landscape(man, task, Z, tmp_path, FAST.replace(resolution=5, bn="reference"), W=W, buffers=buffers)
    F = read_field(tmp_path / "landscape.vti", "loss")[0]
    grid = LatentGrid.from_dict(s["grid"])
    pts = grid.points()
    _, nearest = nearest_model(Z, pts)
    for pid in [0, 7, 12, 24]:
        m = task.make_model()
        m.load_state_dict({**task.layout.unflatten(man.inverse_transform(pts[pid:pid + 1])[0]),
                           **buffers[nearest[pid]]})
        ij = tuple(grid.index([pid])[0])
        assert grid.to_field(np.arange(grid.n_points))[ij] == pid
        assert F[ij] == pytest.approx(task.evaluate(m)[0], rel=1e-5)
    # the input models evaluated directly with their own buffers
    direct = s["fidelity"]["direct_loss"]
    assert direct == pytest.approx([task.evaluate(m)[0] for m in models], rel=1e-5)


def test_log_loss_of_a_perfect_point_is_finite_and_sentinels_stay():
    """A loss of exactly 0 must not become -inf (the topology orders non-finite values above all
    finite ones, so a perfect point would turn into a top vertex); NaN and +inf stay sentinels."""
    from globscope.landscape.driver import log_loss

    loss = np.array([0.0, 1e-320, 1e-3, 1.0, np.nan, np.inf])
    ll = log_loss(loss)
    tiny = np.finfo(np.float64).tiny
    assert ll[0] == np.log10(tiny) and ll[1] == np.log10(tiny)
    assert ll[2] == pytest.approx(-3.0) and ll[3] == 0.0
    assert np.isnan(ll[4]) and np.isposinf(ll[5])
    assert np.isfinite(ll[:4]).all() and ll[0] < ll[2]  # the perfect point is the lowest finite value


def test_perfect_points_field_log_loss_is_finite(tmp_path):
    """End to end: a zero-loss vertex gets a finite log_loss, the lowest of the field."""
    from torch import nn

    from globscope.tasks import Split, Task

    x = np.eye(4, dtype=np.float32).reshape(4, 1, 4)
    data = [Split(x, np.arange(4)), Split(x, np.arange(4))]
    task = Task("perfect", lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False)), lambda: tuple(data))
    I, J = np.eye(4).ravel(), np.eye(4)[::-1].ravel()
    W = (1e4 * np.stack([I, J, 2 * I, 0.3 * (I + J)])).astype(np.float32)
    man = make_manifold("pca", 2).fit(W)
    Z = man.transform(W)
    compute_landscape(man, task, Z, tmp_path, FAST.replace(resolution=(5, 4), margin=0.0))
    F = _fields(tmp_path)
    assert (F["loss"] == 0).any()  # the identity model classifies with a logit gap of 1e4: exp(-1e4) = 0
    assert np.isfinite(F["log_loss"]).all()
    assert F["log_loss"][F["loss"] == 0].max() < F["log_loss"][F["loss"] > 0].min()
