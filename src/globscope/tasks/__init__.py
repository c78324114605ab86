"""Tasks: what evaluates a weight vector — a model factory, evaluation data and a loss.

Built-in tasks cover the embedded data sets; a user names their own as ``package.module:callable``
(a callable with no arguments that returns a :class:`Task`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from globscope.errors import GlobscopeError
from globscope.layout import ParameterLayout
from globscope.tasks import datasets, models
from globscope.tasks.datasets import Split

__all__ = ["Task", "get_task", "BUILTIN_TASKS", "Split"]


@dataclass
class Task:
    """A model factory, its training and evaluation data, and a loss.

    Parameters
    ----------
    name : str
    make_model : callable () -> nn.Module
        Builds the architecture (weights are overwritten, so its initialisation does not matter).
    load_data : callable () -> (Split, Split)
        Training and evaluation splits.
    loss_fn : callable (logits, targets) -> scalar tensor
        Mean loss over the batch.
    n_train, n_eval : int, optional
        Use only the first n examples of a split (keeps CPU work bounded).
    epochs, checkpoint_every : int
        The model zoo's defaults for this task.
    """

    name: str
    make_model: Callable[[], nn.Module]
    load_data: Callable[[], tuple[Split, Split]]
    loss_fn: Callable = F.cross_entropy
    n_train: int | None = None
    n_eval: int | None = None
    epochs: int = 30
    checkpoint_every: int = 2
    description: str = ""
    extra: dict = field(default_factory=dict)

    @cached_property
    def train_data(self) -> Split:
        return self.load_data()[0].subset(self.n_train)

    @cached_property
    def eval_data(self) -> Split:
        return self.load_data()[1].subset(self.n_eval)

    @cached_property
    def layout(self) -> ParameterLayout:
        return ParameterLayout.from_module(self.make_model())

    @property
    def has_batchnorm(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.make_model().modules())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split | None = None) -> tuple[float, float]:
        """Mean loss and accuracy of ``model`` (in eval mode) on ``split`` (default: eval data)."""
        split = split or self.eval_data
        was_training = model.training
        model.eval()
        logits = model(split.x)
        model.train(was_training)
        return (float(self.loss_fn(logits, split.y)),
                float((logits.argmax(1) == split.y).float().mean()))


def _digits_mlp() -> Task:
    return Task("digits-mlp", lambda: models.mlp(64, (32,), 10), datasets.digits,
                epochs=30, checkpoint_every=2,
                description="MLP 64-32-10 on scikit-learn's 8x8 digits (1437 train / 360 eval)")


def _fashion_mlp() -> Task:
    return Task("fashion-mlp", lambda: models.mlp(784, (64,), 10), datasets.fashion_mnist,
                n_train=10000, n_eval=2000, epochs=10, checkpoint_every=1,
                description="MLP 784-64-10 on Fashion-MNIST (first 10000 train / 2000 test images)")


def _fashion_cnn() -> Task:
    return Task("fashion-cnn", models.small_cnn, datasets.fashion_mnist,
                n_train=10000, n_eval=2000, epochs=10, checkpoint_every=1,
                description="CNN (2 conv-BatchNorm blocks) on Fashion-MNIST (10000 train / 2000 test)")


def _fashion_resnet() -> Task:
    return Task("fashion-resnet", models.small_resnet, datasets.fashion_mnist,
                n_train=2000, n_eval=500, epochs=3, checkpoint_every=1,
                description="ResNet (stride-2 stem, 4 basic blocks 16-16-32-64-64 with identity and 1x1-conv "
                            "projection shortcuts, global average pooling; 151738 parameters) on Fashion-MNIST "
                            "(2000 train / 500 test)")


def _mnist_mlp() -> Task:
    return Task("mnist-mlp", lambda: models.mlp(784, (64,), 10), datasets.mnist,
                n_train=10000, n_eval=2000, epochs=10, checkpoint_every=1,
                description="MLP 784-64-10 on MNIST (first 10000 train / 2000 test images)")


BUILTIN_TASKS: dict[str, Callable[[], Task]] = {
    "digits-mlp": _digits_mlp,
    "fashion-mlp": _fashion_mlp,
    "fashion-cnn": _fashion_cnn,
    "fashion-resnet": _fashion_resnet,
    "mnist-mlp": _mnist_mlp,
}


def get_task(name: str) -> Task:
    """A built-in task by name, or a user task ``package.module:callable``."""
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]()
    if ":" not in name:
        raise GlobscopeError(
            f"unknown task {name!r}: built-in tasks are {', '.join(BUILTIN_TASKS)}; "
            "a user task is named package.module:callable")
    mod_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise GlobscopeError(f"task {name!r}: cannot import ({e})") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing: say so, keep the cause
        raise GlobscopeError(f"task {name!r}: importing {mod_name} raised {type(e).__name__}: {e}") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise GlobscopeError(f"task {name!r}: cannot import ({mod_name} has no callable {attr!r})")
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise GlobscopeError(f"task {name!r}: {attr}{inspect.signature(factory)} needs arguments; a task callable "
                             "takes none and returns a globscope.tasks.Task") from None
    except ValueError:  # no signature to inspect (a builtin): calling it will tell
        pass
    try:
        task = factory()
    except Exception as e:  # noqa: BLE001 - the user's factory failed: one line, the cause kept for -v
        raise GlobscopeError(f"task {name!r}: {attr}() raised {type(e).__name__}: {e}") from e
    if not isinstance(task, Task):
        raise GlobscopeError(f"task {name!r}: the callable returned {type(task).__name__}, not a Task")
    return task
