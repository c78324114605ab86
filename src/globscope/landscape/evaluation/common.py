"""The pieces every formulation shares: the fixed evaluation setup, the batched loss and accuracy,
the mean over data slices, BatchNorm buffers, and the machine's side (device, memory budget,
activation count, CPU thread count)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from globscope.errors import GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe
from globscope.landscape.limits import available_memory
from globscope.tasks import Task

ACTIVATIONS = (nn.ReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.Softplus)
PASSTHROUGH = (nn.Identity, nn.Dropout)
MAX_BATCH_MODELS = {"cpu": 256, "cuda": 4096}


def resolve_device(device=None) -> torch.device:
    """``device`` as a torch.device; None (or ``"auto"``) picks CUDA when available, else the CPU.
    Unknown devices and CUDA without CUDA raise a GlobscopeError."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise GlobscopeError(f"unknown device {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GlobscopeError(f"device {device!r} requested but CUDA is not available")
    return dev


def memory_budget(device: torch.device) -> int:
    """Bytes a batch may use: half the free GPU memory, or a quarter of the available RAM (≤ 2 GiB).

    On the CPU larger batches stop paying once they leave the caches, hence the cap.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.5 * free)
    avail = available_memory()
    if avail is None:
        avail = 4 << 30
    return int(min(avail // 4, 2 << 30))


def models_per_batch(budget: int, per_model_bytes: int, cap: int) -> int:
    """Models a batch may hold: as many as ``budget`` bytes allow at ``per_model_bytes``, 1 to ``cap``."""
    return int(max(1, min(cap, budget // per_model_bytes)))


def activation_numel(model: nn.Module, x: torch.Tensor) -> int:
    """Elements of all leaf-module outputs of one forward pass of ``model`` on ``x``, per example.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (n, ...)
        A few examples (two do).

    Returns
    -------
    int
        At least 1; the memory budget counts 4 bytes each (more than is ever alive under no_grad).
    """
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return max(1, math.ceil(total / len(x)))


class num_threads:
    """Context: torch's CPU thread count set to ``n`` (None: unchanged), restored on exit."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        if self.n and self.n != self.old:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.old:
            torch.set_num_threads(self.old)
        return False


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): timings must see the work done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class EvalSetup:
    """What every formulation reads and none changes: the task's architecture and data on the device.

    Attributes
    ----------
    task : Task
    device : torch.device
    model : nn.Module
        The task's architecture in eval mode, without gradients (its own weights unused).
    x : Tensor of shape (n_eval, ...)
        Evaluation inputs; ``y`` (n_eval, ...) their targets.
    bn : {"recompute", "reference"} or None
        None for a model without BatchNorm.
    calib_x : Tensor of shape (n_cal, ...) or None
        The calibration batch, for ``bn="recompute"`` only; ``probe`` then recomputes statistics.
    n_bn : int
        BatchNorm layers of ``model``.
    """

    task: Task
    device: torch.device
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    bn: str | None
    calib_x: torch.Tensor | None
    probe: StatisticsProbe | None
    n_bn: int

    @property
    def layout(self):
        return self.task.layout

    @property
    def n_eval(self) -> int:
        return len(self.y)

    @property
    def loss_fn(self):
        return self.task.loss_fn


def functional_logits(model: nn.Module, params: dict, buffers: dict, xb: torch.Tensor) -> torch.Tensor:
    """``model``'s output on ``xb`` with the given parameters and buffers (one model; vmappable)."""
    return functional_call(model, {**params, **buffers}, (xb,))


def batched_loss(logits: torch.Tensor, yb: torch.Tensor, loss_fn: Callable, classes_first: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and number of correct predictions of each model.

    Parameters
    ----------
    logits : Tensor of shape (B, n, C, …), or (B, C, n) when ``classes_first``
    yb : Tensor of shape (n, …)
    loss_fn : callable
        The task's loss, a mean over examples.
    classes_first : bool

    Returns
    -------
    loss : Tensor of shape (B,)
    correct : Tensor of shape (B,), float32

    Notes
    -----
    For classifier logits the work runs with the classes on axis 1, (B, C, n), which vectorises
    along the examples: PyTorch's row-wise kernels over C = 10 classes (cross-entropy of
    (B·n, C), ``argmax(-1)``) are several times slower on a small CPU. A prediction is
    correct when the target's logit is the *first* maximum, as ``argmax`` decides; a NaN
    logit makes it wrong. Other losses run per model under ``vmap``.
    """
    if classes_first or logits.dim() == 3:
        lo = logits if classes_first else logits.transpose(1, 2)  # (B, C, n)
        B, C, n = lo.shape
        if loss_fn is F.cross_entropy:
            loss = F.cross_entropy(lo, yb.expand(B, n), reduction="none").mean(1)
        else:
            loss = vmap(loss_fn, in_dims=(0, None))(lo.transpose(1, 2), yb)
        if C <= 64:
            m = lo.amax(1, keepdim=True)
            target = lo.gather(1, yb.expand(B, 1, n))
            before = torch.arange(C, device=lo.device)[:, None] < yb[None, :]  # classes ahead of the target
            m_before = torch.where(before, lo, torch.tensor(float("-inf"), device=lo.device)).amax(1, keepdim=True)
            correct = ((target == m) & (m_before < m)).sum((1, 2), dtype=torch.float32)
        else:
            correct = (lo.argmax(1) == yb).sum(-1, dtype=torch.float32)
        return loss, correct
    loss = vmap(loss_fn, in_dims=(0, None))(logits, yb)
    correct = (logits.argmax(2) == yb).flatten(1).sum(-1, dtype=torch.float32)
    return loss, correct


def mean_over_data(setup: EvalSetup, data_batch: int, forward: Callable[[torch.Tensor, int], torch.Tensor],
                   classes_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of a batch of models over the evaluation data, ``data_batch`` examples a pass.

    Parameters
    ----------
    setup : EvalSetup
    data_batch : int
    forward : callable (xb, j) -> logits
        The models' logits on slice ``j``, ``xb`` (n_j, ...): (B, n_j, C, …), or (B, C, n_j) when
        ``classes_first``.
    classes_first : bool

    Returns
    -------
    loss, accuracy : Tensor of shape (B,)
        Means over all ``n_eval`` examples (slice sums weighted by their sizes).
    """
    loss_sum, correct = 0.0, 0.0
    for j, s in enumerate(range(0, setup.n_eval, data_batch)):
        xb, yb = setup.x[s:s + data_batch], setup.y[s:s + data_batch]
        loss, corr = batched_loss(forward(xb, j), yb, setup.loss_fn, classes_first)
        loss_sum = loss_sum + loss * len(yb)
        correct = correct + corr
    return loss_sum / setup.n_eval, correct / setup.n_eval


@torch.no_grad()
def bn_statistics(setup: EvalSetup, W: torch.Tensor, per_model: bool = False) -> dict[str, torch.Tensor]:
    """Recomputed BatchNorm statistics of the models ``W`` (B, D): buffers (B, C) by name.

    ``per_model``: one model at a time (the loop formulation), else all under ``vmap``.
    """
    if setup.probe is None:
        raise GlobscopeError("BatchNorm statistics: this evaluator has no recompute probe")
    params = setup.layout.unflatten(W)
    if per_model:
        per = [setup.probe({k: v[i] for k, v in params.items()}, setup.calib_x) for i in range(len(W))]
        return {k: torch.stack([p[k] for p in per]) for k in per[0]}
    return vmap(setup.probe, in_dims=(0, None))(params, setup.calib_x)


def require_reference_buffers(setup: EvalSetup, buffers: dict | None) -> None:
    """``bn="reference"`` evaluates each model with given statistics: they must be there."""
    if setup.bn == "reference" and buffers is None:
        raise GlobscopeError("BatchNorm reference: no buffers given for the models")


def model_buffers(setup: EvalSetup, W: torch.Tensor, buffers: dict | None, per_model: bool = False
                  ) -> dict[str, torch.Tensor]:
    """The buffers the models ``W`` (B, D) run with, float32 on the device, (B, ...) by name:
    recomputed BatchNorm statistics, the given ones (``bn="reference"``: required), or none."""
    require_reference_buffers(setup, buffers)
    if setup.bn == "recompute":
        buffers = bn_statistics(setup, W, per_model)
    return {k: v.to(setup.device, torch.float32) for k, v in (buffers or {}).items()}


__all__ = ["ACTIVATIONS", "PASSTHROUGH", "MAX_BATCH_MODELS", "resolve_device", "memory_budget", "models_per_batch",
           "activation_numel", "num_threads", "synchronize", "EvalSetup", "functional_logits", "batched_loss",
           "mean_over_data", "bn_statistics", "model_buffers", "require_reference_buffers"]
