"""Batched evaluation: the loss and accuracy of many weight vectors of one task at once.

Two formulations compute the same numbers:

``vmap``
    All models of a batch in one forward pass: ``torch.func.functional_call`` under ``vmap`` over
    the stacked parameters. The data is shared, so the first layer of all models becomes one large
    matrix product (a grouped convolution for a CNN).
``loop``
    One model at a time, one forward pass over the whole evaluation set.

On a GPU the loop starves the device; on a small CPU a full-batch per-model forward is already
efficient for large layers. ``formulation="auto"`` times both on the first batch and keeps the
faster (measure, don't assume).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn

from globscope.errors import GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe, check_bn_mode
from globscope.tasks import Task

log = logging.getLogger(__name__)

FORMULATIONS = ("auto", "vmap", "loop")
MAX_BATCH_MODELS = {"cpu": 256, "cuda": 4096}


def resolve_device(device=None) -> torch.device:
    """``device`` as a torch.device; None picks CUDA when available, else the CPU."""
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
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        avail = 4 << 30
    return int(min(avail // 4, 2 << 30))


_default_budget = memory_budget


def activation_numel(model: nn.Module, x: torch.Tensor) -> int:
    """Elements of all leaf-module outputs of one forward pass of ``model`` on ``x``, per example."""
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


class BatchedEvaluator:
    """Loss and accuracy of batches of weight vectors of one task.

    Parameters
    ----------
    task : Task
        Model factory, evaluation data, loss (a mean over examples).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    bn : {"recompute", "reference"}, optional
        BatchNorm statistics (see ``globscope.landscape.batchnorm``); ignored without BatchNorm.
        Default ``recompute``.
    calibration_size : int
        Training examples in the fixed calibration batch (the first ones) for ``recompute``.
    formulation : {"auto", "vmap", "loop"}
        See the module's notes. ``auto`` times both on the first batch.
    memory_budget : int, optional
        Bytes one batch may use (default: ``memory_budget(device)``).
    max_batch_models : int, optional
        Most models per batch (default 256 on the CPU, 4096 on a GPU).
    data_batch : int, optional
        Evaluation examples per forward pass (default: all, unless the budget forbids).
    """

    def __init__(self, task: Task, device=None, bn: str | None = None, calibration_size: int = 256,
                 formulation: str = "auto", memory_budget: int | None = None,
                 max_batch_models: int | None = None, data_batch: int | None = None):
        if formulation not in FORMULATIONS:
            raise GlobscopeError(f"formulation must be one of {FORMULATIONS}, not {formulation!r}")
        self.task = task
        self.device = resolve_device(device)
        self.layout = task.layout
        self.model = task.make_model().to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.bn = check_bn_mode(bn, task.has_batchnorm)
        self.formulation = formulation
        ev = task.eval_data
        if len(ev) == 0:
            raise GlobscopeError(f"task {task.name!r}: empty evaluation data")
        self.x = ev.x.to(self.device)
        self.y = ev.y.to(self.device)
        self.n_eval = len(ev)
        self.buffer_keys = [k for k, v in self.model.named_buffers() if v.is_floating_point()]
        self.calibration_size = calibration_size
        self.probe = None
        if self.bn == "recompute":
            n = min(calibration_size, len(task.train_data))
            if n < 2:
                raise GlobscopeError(f"task {task.name!r}: BatchNorm recompute needs at least 2 training examples")
            self.calib_x = task.train_data.x[:n].to(self.device)
            self.probe = StatisticsProbe(self.model)
        # memory: activations of one model per example, and the parameter copies
        self.act_per_example = activation_numel(self.model, self.x[:2])
        self.budget = int(memory_budget or _default_budget(self.device))
        per_example_bytes = 4 * 3 * self.act_per_example  # outputs + vmap temporaries
        self.data_batch = int(data_batch or self.n_eval)
        if self.data_batch * per_example_bytes > self.budget:
            self.data_batch = max(1, self.budget // per_example_bytes)
        self.data_batch = min(self.data_batch, self.n_eval)
        n_cal = len(self.calib_x) if self.probe is not None else 0
        per_model = (per_example_bytes * max(self.data_batch, n_cal)
                     + 4 * 4 * self.layout.n_params)
        cap = max_batch_models or MAX_BATCH_MODELS.get(self.device.type, 256)
        self.batch_models = int(max(1, min(cap, self.budget // per_model)))
        self.timings: dict[str, float] = {}

    # -- per-model pure functions (vmapped or looped) ------------------------------------------
    def _loss_acc(self, params: dict, buffers: dict) -> tuple[torch.Tensor, torch.Tensor]:
        from torch.func import functional_call

        state = {**params, **buffers}
        loss_sum = 0.0
        correct = 0.0
        for s in range(0, self.n_eval, self.data_batch):
            xb, yb = self.x[s:s + self.data_batch], self.y[s:s + self.data_batch]
            logits = functional_call(self.model, state, (xb,))
            loss_sum = loss_sum + self.task.loss_fn(logits, yb) * len(yb)
            correct = correct + (logits.argmax(-1) == yb).sum(dtype=torch.float32)
        return loss_sum / self.n_eval, correct / self.n_eval

    # -- batches -------------------------------------------------------------------------------
    @torch.no_grad()
    def statistics(self, W: torch.Tensor, formulation: str = "vmap") -> dict[str, torch.Tensor]:
        """Recomputed BatchNorm statistics of the models ``W`` (B, D): buffers (B, C) by name."""
        from torch.func import vmap

        if self.probe is None:
            raise GlobscopeError("BatchNorm statistics: this evaluator has no recompute probe")
        params = self.layout.unflatten(W)
        if formulation == "loop":
            per = [self.probe({k: v[i] for k, v in params.items()}, self.calib_x) for i in range(len(W))]
            return {k: torch.stack([p[k] for p in per]) for k in per[0]}
        return vmap(self.probe, in_dims=(0, None))(params, self.calib_x)

    @torch.no_grad()
    def _run(self, W: torch.Tensor, buffers: dict | None, formulation: str):
        from torch.func import vmap

        if self.bn == "recompute":
            buffers = self.statistics(W, formulation)
        elif self.bn == "reference":
            if buffers is None:
                raise GlobscopeError("BatchNorm reference: no buffers given for the models")
        buffers = {k: v.to(self.device, torch.float32) for k, v in (buffers or {}).items()}
        params = self.layout.unflatten(W)
        if formulation == "loop":
            out = [self._loss_acc({k: v[i] for k, v in params.items()},
                                  {k: v[i] for k, v in buffers.items()}) for i in range(len(W))]
            return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
        return vmap(self._loss_acc)(params, buffers)

    def _choose(self, W, buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """Time both formulations on the first batch; keep the faster; return the batch's results."""
        k = min(len(W), 4)
        sub = {kk: v[:k] for kk, v in (buffers or {}).items()} or None
        self._run(W[:1], {kk: v[:1] for kk, v in sub.items()} if sub else None, "vmap")  # warm-up
        self._run(W[:1], {kk: v[:1] for kk, v in sub.items()} if sub else None, "loop")
        self._sync()
        t0 = time.perf_counter()
        self._run(W[:k], sub, "loop")
        self._sync()
        t_loop = (time.perf_counter() - t0) / k
        t0 = time.perf_counter()
        out = self._run(W, buffers, "vmap")
        self._sync()
        t_vmap = (time.perf_counter() - t0) / len(W)
        self.timings = {"loop_s_per_model": t_loop, "vmap_s_per_model": t_vmap, "probe_models": len(W)}
        self.formulation = "vmap" if t_vmap <= t_loop else "loop"
        log.info("formulation: vmap %.3g ms/model, loop %.3g ms/model -> %s",
                 1e3 * t_vmap, 1e3 * t_loop, self.formulation)
        return out

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, W, buffers: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy of each model over the evaluation data.

        Parameters
        ----------
        W : array or Tensor of shape (B, D)
            Weight vectors in the task's layout order. Any B; split into batches of at most
            ``batch_models``.
        buffers : dict of str to Tensor of shape (B, ...), optional
            Per-model buffers (BatchNorm running statistics) for ``bn="reference"``.

        Returns
        -------
        loss : ndarray of shape (B,), float64
            Non-finite losses (NaN, ±inf) are returned as they are.
        accuracy : ndarray of shape (B,), float64
        """
        W = torch.as_tensor(W)
        if W.ndim != 2 or W.shape[1] != self.layout.n_params:
            raise GlobscopeError(f"weights of shape {tuple(W.shape)} do not fit task {self.task.name!r} "
                                 f"(D = {self.layout.n_params})")
        W = W.to(self.device, torch.float32)
        losses, accs = [], []
        for s in range(0, len(W), self.batch_models):
            Wb = W[s:s + self.batch_models]
            bb = {k: v[s:s + self.batch_models] for k, v in buffers.items()} if buffers else None
            if self.formulation == "auto":
                loss, acc = self._choose(Wb, bb)
            else:
                loss, acc = self._run(Wb, bb, self.formulation)
            losses.append(loss.double().cpu())
            accs.append(acc.double().cpu())
        return torch.cat(losses).numpy(), torch.cat(accs).numpy()

    def flops_per_model(self) -> int:
        """Floating-point operations of one model's forward pass over the evaluation data
        (``torch.utils.flop_counter``: matrix products and convolutions)."""
        from torch.utils.flop_counter import FlopCounterMode

        n = min(self.n_eval, 256)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            self.model(self.x[:n])
        return int(round(fc.get_total_flops() * self.n_eval / n))

    def describe(self) -> dict:
        """The settings in effect (for landscape.json)."""
        return {"device": str(self.device), "formulation": self.formulation, "batch_models": self.batch_models,
                "data_batch": self.data_batch, "memory_budget_bytes": self.budget, "bn": self.bn,
                "calibration_size": len(self.calib_x) if self.probe is not None else None,
                "n_eval": self.n_eval, "formulation_timings": self.timings}


__all__ = ["BatchedEvaluator", "FORMULATIONS", "resolve_device", "memory_budget", "activation_numel"]
