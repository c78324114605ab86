"""Built-in tasks on the embedded data sets, user tasks, and deterministic model zoos."""

import numpy as np
import pytest
import torch

from globscope.checkpoints import CheckpointSet
from globscope.errors import GlobscopeError
from globscope.settings import ZooSettings
from globscope.tasks import BUILTIN_TASKS, Task, datasets, get_task
from globscope.zoo import train_zoo


def test_digits_split_is_the_whole_bundled_set():
    train, test = datasets.digits()
    assert len(train) + len(test) == 1797
    assert train.x.shape == (1437, 64) and float(train.x.max()) <= 1.0
    assert set(np.unique(test.y.numpy())) == set(range(10))


@pytest.mark.parametrize("loader, n_train", [(datasets.fashion_mnist, 60000), (datasets.mnist, 60000)])
def test_mnist_like_sets_read_from_their_installed_files(loader, n_train):
    train, test = loader()
    assert train.x.shape == (n_train, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) == 1.0
    counts = np.bincount(test.y.numpy(), minlength=10)
    assert counts.sum() == 10000 and counts.min() > 800  # balanced classes: labels decoded right


def test_idx_errors_name_the_file(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + (100).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(GlobscopeError, match="bad-idx3-ubyte: truncated IDX"):
        datasets.read_idx(p)
    with pytest.raises(GlobscopeError, match="missing-file: data file not found"):
        datasets.read_idx(tmp_path / "missing-file")


@pytest.mark.parametrize("name", list(BUILTIN_TASKS))
def test_builtin_models_run_on_their_data(name):
    task = get_task(name)
    loss, acc = task.evaluate(task.make_model(), task.eval_data.subset(64))
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    assert task.layout.n_params == sum(p.numel() for p in task.make_model().parameters())
    assert task.has_batchnorm == (name in ("fashion-cnn", "fashion-resnet"))


def user_task():
    return Task("tiny", lambda: torch.nn.Linear(64, 10), datasets.digits)


def test_user_task_by_module_and_callable():
    assert get_task("tests.core.test_tasks_and_zoo:user_task").name == "tiny"
    with pytest.raises(GlobscopeError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(GlobscopeError, match="cannot import"):
        get_task("no_such_module:thing")


@pytest.mark.parametrize("source, message", [
    ("def task():\n    raise RuntimeError('no data here')\n", r"task\(\) raised RuntimeError: no data here"),
    ("def task(path):\n    return path\n", r"task\(path\) needs arguments; a task callable takes none"),
    ("def task(:\n", r"importing broken_\w+ raised SyntaxError: invalid syntax \(broken_\w+\.py, line 1\)"),
    ("def other():\n    pass\n", r"has no callable 'task'"),
    ("def task():\n    return 42\n", "returned int, not a Task"),
])
def test_broken_user_tasks_are_one_line_naming_the_task(source, message, tmp_path, monkeypatch):
    name = f"broken_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(GlobscopeError, match=f"task '{name}:task': .*" + message) as e:
        get_task(f"{name}:task")
    assert "\n" not in str(e.value)


def test_zoo_is_deterministic_and_learns(tmp_path):
    settings = ZooSettings("digits-mlp", n_variants=2, epochs=4, checkpoint_every=2, seed=3)
    fractions = []
    a = train_zoo(settings, tmp_path / "a", progress=fractions.append)
    train_zoo(settings, tmp_path / "b")
    assert [c.file for c in a.checkpoints] == ["A/epoch_2.pt", "A/epoch_4.pt", "B/epoch_2.pt", "B/epoch_4.pt"]
    Wa, _ = CheckpointSet.open(tmp_path / "a").load_weights()
    Wb, _ = CheckpointSet.open(tmp_path / "b").load_weights()
    assert np.array_equal(Wa, Wb)
    assert not np.array_equal(Wa[1], Wa[3])  # variants differ (seed, hyper-parameters)
    assert fractions[-1] == 1.0
    m = CheckpointSet.open(tmp_path / "a")
    assert m.task == "digits-mlp" and m.meta["variants"][1]["batch_size"] == 64
    # the recorded metrics are the checkpoint's real evaluation
    c = m.checkpoints[3]
    task = get_task(settings.task)
    net = task.make_model()
    net.load_state_dict(m.state_dict(3))
    loss, acc = task.evaluate(net)
    assert loss == pytest.approx(c.metrics["eval_loss"], rel=1e-6) and acc == c.metrics["eval_accuracy"]
    assert acc > 0.8


def test_the_command_line_lists_the_built_in_tasks_without_importing_pytorch():
    import subprocess
    import sys

    from globscope import names, tasks

    assert tuple(tasks.BUILTIN_TASKS) == names.BUILTIN_TASKS
    code = "import sys; from globscope.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr
