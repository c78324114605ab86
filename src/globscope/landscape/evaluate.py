"""Batched evaluation: the loss and accuracy of many weight vectors of one task at once.

Three formulations compute the same numbers:

``stacked``
    For plain MLPs (``nn.Sequential`` of Flatten, Linear and element-wise activations): the first
    layer of all models is one large matrix product ``x @ [W1_1 … W1_B]ᵀ`` (the data is shared),
    the later layers are batched products (``baddbmm``).
``vmap``
    All models of a batch in one forward pass: ``torch.func.functional_call`` under ``vmap`` over
    the stacked parameters. The data is shared, so the first layer of all models becomes one large
    matrix product (a grouped convolution for a CNN).
``loop``
    One model at a time, one forward pass over the whole evaluation set.

On a GPU the loop starves the device; on a small CPU a full-batch per-model forward is already
efficient for large layers. ``formulation="auto"`` times every applicable formulation on the
first batch — on the CPU each also with one thread, since small kernels on a shared 2-core machine
stall waiting for the second core — and keeps the fastest (measure, don't assume).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from globscope.errors import GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe, check_bn_mode
from globscope.tasks import Task

log = logging.getLogger(__name__)

FORMULATIONS = ("auto", "stacked", "vmap", "loop")
ACTIVATIONS = (nn.ReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.Softplus)
PASSTHROUGH = (nn.Identity, nn.Dropout)
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


class Aborted(GlobscopeError):
    """``should_abort()`` returned True; work already finished (stored chunks) is kept."""


class _threads:
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


def stackable(model: nn.Module) -> bool:
    """Whether ``model`` is a plain MLP the stacked formulation handles: an ``nn.Sequential`` of
    Linear layers and element-wise activations, with Flatten only before the first Linear."""
    if not isinstance(model, nn.Sequential):
        return False
    seen_linear = False
    for m in model.children():
        if isinstance(m, nn.Linear):
            seen_linear = True
        elif isinstance(m, nn.Flatten):
            if seen_linear or m.start_dim != 1 or m.end_dim != -1:
                return False
        elif not isinstance(m, ACTIVATIONS + PASSTHROUGH):
            return False
    return seen_linear


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
    formulation : {"auto", "stacked", "vmap", "loop"}
        See the module's notes. ``auto`` times the applicable ones on the first batch.
    threads : int, optional
        CPU threads while evaluating (restored afterwards); default: torch's setting, or what
        ``auto`` measured to be faster.
    memory_budget : int, optional
        Bytes one batch may use (default: ``memory_budget(device)``).
    max_batch_models : int, optional
        Most models per batch (default 256 on the CPU, 4096 on a GPU).
    data_batch : int, optional
        Evaluation examples per forward pass (default: all, unless the budget forbids).
    """

    def __init__(self, task: Task, device=None, bn: str | None = None, calibration_size: int = 256,
                 formulation: str = "auto", memory_budget: int | None = None,
                 max_batch_models: int | None = None, data_batch: int | None = None,
                 threads: int | None = None):
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
        self.threads = threads
        self._in_session = 0
        self.stackable = stackable(self.model) and not task.has_batchnorm
        if formulation == "stacked" and not self.stackable:
            raise GlobscopeError(f"task {task.name!r}: the stacked formulation needs an nn.Sequential MLP "
                                 "(Flatten, Linear, element-wise activations)")
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
        # all layer outputs of an example at once: more than is ever alive under no_grad
        per_example_bytes = 4 * self.act_per_example
        self.tune_data_batch = data_batch is None
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

    # -- per-model pure function (vmapped or looped) ----------------------------------------
    def _logits(self, params: dict, buffers: dict, xb: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        return functional_call(self.model, {**params, **buffers}, (xb,))

    def _stacked_logits(self, params: dict, xb: torch.Tensor) -> torch.Tensor:
        """Logits of all models of a plain MLP, classes on axis 1: (B, C, n).

        Activations are kept feature-major, (B, features, n): the first layer of all models is one
        matrix product ``[W1_1; …; W1_B] @ xᵀ`` straight from the weights' row-major layout (no
        copy), the later layers are batched products ``W_b @ h_b``.
        """
        B = next(iter(params.values())).shape[0]
        h, shared = xb, True
        for name, m in self.model.named_children():
            if isinstance(m, nn.Flatten):
                h = h.flatten(1)
            elif isinstance(m, nn.Linear):
                w, b = params[f"{name}.weight"], params.get(f"{name}.bias")
                out = w.shape[1]
                if shared:
                    w2 = w.reshape(B * out, -1)
                    h = torch.addmm(b.reshape(-1, 1), w2, h.t()) if b is not None else w2 @ h.t()
                    h = h.view(B, out, len(xb))
                    shared = False
                else:
                    h = torch.baddbmm(b[:, :, None], w, h) if b is not None else torch.bmm(w, h)
            elif isinstance(m, nn.ReLU):
                h = h.relu_()
            elif isinstance(m, PASSTHROUGH):
                pass
            else:
                h = m(h)
        return h

    def _batched_loss(self, logits: torch.Tensor, yb: torch.Tensor, classes_first: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and number of correct predictions of each model.

        Parameters
        ----------
        logits : Tensor (B, n, C, …), or (B, C, n) when ``classes_first``
        yb : Tensor (n, …)

        Notes
        -----
        For classifier logits the work runs with the classes on axis 1, (B, C, n), which vectorises
        along the examples: PyTorch's row-wise kernels over C = 10 classes (cross-entropy of
        (B·n, C), ``argmax(-1)``) are several times slower on a small CPU. A prediction is
        correct when the target's logit is the *first* maximum, as ``argmax`` decides; a NaN
        logit makes it wrong. Other losses run per model under ``vmap``.
        """
        from torch.func import vmap

        if classes_first or logits.dim() == 3:
            lo = logits if classes_first else logits.transpose(1, 2)  # (B, C, n)
            B, C, n = lo.shape
            if self.task.loss_fn is F.cross_entropy:
                loss = F.cross_entropy(lo, yb.expand(B, n), reduction="none").mean(1)
            else:
                loss = vmap(self.task.loss_fn, in_dims=(0, None))(lo.transpose(1, 2), yb)
            if C <= 64:
                m = lo.amax(1, keepdim=True)
                target = lo.gather(1, yb.expand(B, 1, n))
                before = torch.arange(C, device=lo.device)[:, None] < yb[None, :]  # classes ahead of the target
                m_before = torch.where(before, lo, torch.tensor(float("-inf"), device=lo.device)).amax(1, keepdim=True)
                correct = ((target == m) & (m_before < m)).sum((1, 2), dtype=torch.float32)
            else:
                correct = (lo.argmax(1) == yb).sum(-1, dtype=torch.float32)
            return loss, correct
        loss = vmap(self.task.loss_fn, in_dims=(0, None))(logits, yb)
        correct = (logits.argmax(2) == yb).flatten(1).sum(-1, dtype=torch.float32)
        return loss, correct

    def _loss_acc(self, params: dict, buffers: dict, batched) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy over the evaluation data (in ``data_batch`` slices); ``params`` and
        ``buffers`` have a leading model axis. ``batched``: "stacked", True (vmap) or False (one model)."""
        from torch.func import vmap

        if batched == "stacked":
            fwd = lambda p, b, xb: self._stacked_logits(p, xb)  # noqa: E731
        elif batched:
            fwd = vmap(self._logits, in_dims=(0, 0, None))
        else:
            fwd = lambda p, b, xb: self._logits(p, b, xb)[None]  # noqa: E731
        loss_sum, correct = 0.0, 0.0
        for s in range(0, self.n_eval, self.data_batch):
            xb, yb = self.x[s:s + self.data_batch], self.y[s:s + self.data_batch]
            loss, corr = self._batched_loss(fwd(params, buffers, xb), yb, classes_first=batched == "stacked")
            loss_sum = loss_sum + loss * len(yb)
            correct = correct + corr
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
        if self.bn == "recompute":
            buffers = self.statistics(W, formulation)
        elif self.bn == "reference":
            if buffers is None:
                raise GlobscopeError("BatchNorm reference: no buffers given for the models")
        buffers = {k: v.to(self.device, torch.float32) for k, v in (buffers or {}).items()}
        params = self.layout.unflatten(W)
        if formulation == "loop":
            out = [self._loss_acc({k: v[i] for k, v in params.items()},
                                  {k: v[i] for k, v in buffers.items()}, batched=False) for i in range(len(W))]
            return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
        return self._loss_acc(params, buffers, batched="stacked" if formulation == "stacked" else True)

    SMALL_DATA_BATCH = 128

    def candidates(self) -> list[tuple[str, int, int]]:
        """(formulation, threads, data batch) triples ``auto`` measures.

        On the CPU also one thread, and data batches of 128 examples (whose activations stay in
        cache: 3× faster for the CNN than the whole set at once)."""
        forms = (["stacked"] if self.stackable else []) + ["vmap", "loop"]
        n = self.threads or torch.get_num_threads()
        cpu = self.device.type == "cpu"
        threads = [n, 1] if cpu and n > 1 else [n]
        batches = [self.data_batch]
        if cpu and self.tune_data_batch and self.data_batch > 2 * self.SMALL_DATA_BATCH:
            batches.append(self.SMALL_DATA_BATCH)
        return [(f, t, b) for f in forms for t in threads for b in batches]

    def _choose(self, W, buffers) -> tuple[torch.Tensor, torch.Tensor]:
        """Time every candidate on the first batch (the loop on a few models), the better of two
        runs each; keep the fastest.

        Returns the batch's results (computed by the vmap candidate, or the winner)."""
        k = min(len(W), 4)
        sub = {kk: v[:k] for kk, v in (buffers or {}).items()} or None
        one = {kk: v[:1] for kk, v in sub.items()} if sub else None
        per_model, results = {}, {}
        for form, nthreads, self.data_batch in self.candidates():
            with _threads(nthreads):
                self._run(W[:1], one, form)  # warm-up
                Wp, bp = (W[:k], sub) if form == "loop" else (W, buffers)
                best_t = np.inf
                for _ in range(2):  # the better of two: a shared machine's stalls are not the method's
                    self._sync()
                    t0 = time.perf_counter()
                    out = self._run(Wp, bp, form)
                    self._sync()
                    best_t = min(best_t, time.perf_counter() - t0)
                per_model[(form, nthreads, self.data_batch)] = best_t / len(Wp)
                if form != "loop":
                    results[(form, self.data_batch)] = out
        best = min(per_model, key=per_model.get)
        self.formulation, self.threads, self.data_batch = best
        self.timings = {f"{f}@{t}thr@{b}": round(1e3 * v, 4) for (f, t, b), v in per_model.items()}
        log.info("formulation (ms/model): %s -> %s, %d thread(s), data batch %d", self.timings, *best)
        if (self.formulation, self.data_batch) in results:
            return results[(self.formulation, self.data_batch)]
        with _threads(self.threads):
            return self._run(W, buffers, self.formulation)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, W, buffers: dict | None = None, progress=None, should_abort=None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy of each model over the evaluation data.

        Parameters
        ----------
        W : array or Tensor of shape (B, D)
            Weight vectors in the task's layout order. Any B; split into batches of at most
            ``batch_models``.
        buffers : dict of str to Tensor of shape (B, ...), optional
            Per-model buffers (BatchNorm running statistics) for ``bn="reference"``.
        progress : callable(float), optional
            Called with the fraction of models done after each batch.
        should_abort : callable() -> bool, optional
            Polled before each batch; True raises ``globscope.landscape.Aborted``.

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
        with contextlib.nullcontext() if self._in_session else self.session():
            return self._evaluate(W, buffers, progress, should_abort)

    @contextlib.contextmanager
    def session(self):
        """A block of evaluations (a whole field) run with the evaluator's thread count; torch's
        setting is restored on exit. ``evaluate`` outside a session opens one per call."""
        old = torch.get_num_threads()
        self._in_session += 1
        try:
            if self.threads and self.threads != old:
                torch.set_num_threads(self.threads)
            yield self
        finally:
            self._in_session -= 1
            if torch.get_num_threads() != old:
                torch.set_num_threads(old)

    def _evaluate(self, W, buffers, progress=None, should_abort=None):
        losses, accs = [], []
        for s in range(0, len(W), self.batch_models):
            if should_abort and should_abort():
                raise Aborted(f"evaluation aborted after {s} of {len(W)} models")
            Wb = W[s:s + self.batch_models]
            bb = {k: v[s:s + self.batch_models] for k, v in buffers.items()} if buffers else None
            if self.formulation == "auto":
                loss, acc = self._choose(Wb, bb)
                torch.set_num_threads(self.threads)
            else:
                loss, acc = self._run(Wb, bb, self.formulation)
            losses.append(loss.double().cpu())
            accs.append(acc.double().cpu())
            if progress:
                progress(min(s + self.batch_models, len(W)) / len(W))
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
        return {"device": str(self.device), "formulation": self.formulation, "threads": self.threads,
                "batch_models": self.batch_models,
                "data_batch": self.data_batch, "memory_budget_bytes": self.budget, "bn": self.bn,
                "calibration_size": len(self.calib_x) if self.probe is not None else None,
                "n_eval": self.n_eval, "formulation_timings": self.timings}


__all__ = ["BatchedEvaluator", "FORMULATIONS", "stackable", "resolve_device", "memory_budget", "activation_numel"]
