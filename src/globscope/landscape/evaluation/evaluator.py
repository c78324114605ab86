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
``factored``
    For plain MLPs decoded by a manifold whose decoder ends in an affine map, ``w(z) = c(z) @ A + b``
    with a code ``c`` of K entries (the autoencoder's last hidden layer, K = 128; PCA's latent point,
    K = d): the first layer is linear in the code, ``x @ W1(z)ᵀ + b1(z) = Σ_k c_k P_k + P_0`` with
    ``P_k = x @ A1_kᵀ + a1_k`` computed once per evaluator (``set_affine_head``), so the first layer
    of B models costs one product (B, K+1) @ (K+1, width·n) instead of (B·width, in) @ (in, n):
    in/(K+1) times fewer operations (784/129 ≈ 6 for fashion-mlp with the autoencoder). The later
    layers' weights are decoded from the codes (only their slice of A) and run as ``stacked``.
    Needs the codes (``evaluate(codes=…)``); given full weights it runs as ``stacked``.
``grouped``
    For plain CNNs (``nn.Sequential`` of Conv2d, BatchNorm2d, pooling and element-wise layers,
    then Flatten and Linear layers): G models at once as one network with G× the channels — the
    first convolution of all G models is one convolution of the shared input with G·C_out output
    channels, the later ones grouped convolutions (``groups = G``), BatchNorm per channel, the
    Linear layers batched products. On the CPU G × data batch is kept near 128 examples, whose
    activations stay in cache, and 2×2 max pooling runs as three element-wise maxima (PyTorch's
    pooling kernel took most of a small CNN's time). BatchNorm recompute runs the calibration
    batch through the same grouped network in training mode.

On a GPU the loop starves the device; on a small CPU a full-batch per-model forward is already
efficient for large layers. ``formulation="auto"`` times every applicable formulation on the
first batch — on the CPU each also with one thread, since small kernels on a shared 2-core machine
stall waiting for the second core — and keeps the fastest (measure, don't assume). On the CPU a
screening round on a slice of the batch drops the clear losers first (``BatchedEvaluator._choose``).
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

from globscope.errors import Aborted, GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe, batchnorm_modules, check_bn_mode
from globscope.tasks import Task

log = logging.getLogger(__name__)

FORMULATIONS = ("auto", "stacked", "vmap", "loop", "factored", "grouped")
ACTIVATIONS = (nn.ReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.Softplus)
PASSTHROUGH = (nn.Identity, nn.Dropout)
MAX_BATCH_MODELS = {"cpu": 256, "cuda": 4096}
# the precomputed first-layer products of the factored formulation (twice over while ``auto``
# tries a smaller data batch) may take at most this share of the memory budget
HEAD_BUDGET_FRACTION = 0.25


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


POOLS = (nn.MaxPool2d, nn.AvgPool2d)
# models × examples of one grouped pass on the CPU (its activations stay in cache)
GROUP_EXAMPLES = 128


def groupable(model: nn.Module) -> bool:
    """Whether ``model`` is a plain CNN the grouped formulation handles: an ``nn.Sequential`` that
    starts with a Conv2d (groups = 1, zero padding) on the data, then Conv2d, BatchNorm2d, pooling
    and element-wise layers, then Flatten, then Linear and element-wise layers."""
    if not isinstance(model, nn.Sequential):
        return False
    stage, first = "conv", True
    for m in model.children():
        if isinstance(m, PASSTHROUGH + ACTIVATIONS):
            if first and not isinstance(m, PASSTHROUGH):
                return False
            continue
        if stage == "conv":
            if isinstance(m, nn.Conv2d):
                if m.padding_mode != "zeros" or isinstance(m.padding, str) or (first and m.groups != 1):
                    return False
                first = False
            elif isinstance(m, nn.BatchNorm2d) and not first:
                pass
            elif isinstance(m, POOLS) and not first:
                pass
            elif isinstance(m, nn.Flatten) and not first and m.start_dim == 1 and m.end_dim == -1:
                stage = "linear"
            else:
                return False
        elif not isinstance(m, nn.Linear):
            return False
    return stage == "linear"


def _max_pool_2x2(h: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(h, 2)`` as three element-wise maxima (same values, NaN propagates)."""
    H, W = h.shape[-2] // 2 * 2, h.shape[-1] // 2 * 2
    h = h[..., :H, :W]
    return torch.maximum(torch.maximum(h[..., 0::2, 0::2], h[..., 0::2, 1::2]),
                         torch.maximum(h[..., 1::2, 0::2], h[..., 1::2, 1::2]))


def first_linear(model: nn.Module) -> str | None:
    """Name of the first Linear child of a stackable MLP when only Flatten and pass-through
    modules come before it (it then sees the raw data), else None."""
    if not stackable(model):
        return None
    for name, m in model.named_children():
        if isinstance(m, nn.Linear):
            return name
        if not isinstance(m, (nn.Flatten,) + PASSTHROUGH):
            return None
    return None


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
        if formulation in ("stacked", "factored") and not self.stackable:
            raise GlobscopeError(f"task {task.name!r}: the {formulation} formulation needs an nn.Sequential MLP "
                                 "(Flatten, Linear, element-wise activations) without BatchNorm")
        self.first_linear = first_linear(self.model) if self.stackable else None
        self.factorable = self.first_linear is not None
        if formulation == "factored" and not self.factorable:
            raise GlobscopeError(f"task {task.name!r}: the factored formulation needs an MLP whose first "
                                 "layer (after Flatten) is a Linear layer on the data")
        self.head = self._head = None  # the affine head of the factored formulation (set_affine_head)
        self.groupable = groupable(self.model)
        if formulation == "grouped" and not self.groupable:
            raise GlobscopeError(f"task {task.name!r}: the grouped formulation needs an nn.Sequential CNN "
                                 "(Conv2d, BatchNorm2d, pooling, activations; Flatten; Linear layers)")
        ev = task.eval_data
        if len(ev) == 0:
            raise GlobscopeError(f"task {task.name!r}: empty evaluation data")
        self.x = ev.x.to(self.device)
        self.y = ev.y.to(self.device)
        self.n_eval = len(ev)
        self.buffer_keys = [k for k, v in self.model.named_buffers() if v.is_floating_point()]
        self.calibration_size = calibration_size
        self.probe = None
        self._n_bn = len(batchnorm_modules(self.model))
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
        self.tuning: dict | None = None  # how ``auto`` chose (screened slice, dropped candidates, seconds)

    # -- per-model pure function (vmapped or looped) ----------------------------------------
    def _logits(self, params: dict, buffers: dict, xb: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        return functional_call(self.model, {**params, **buffers}, (xb,))

    def _stacked_logits(self, params: dict, xb: torch.Tensor, after: str | None = None,
                        h: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of all models of a plain MLP, classes on axis 1: (B, C, n).

        Activations are kept feature-major, (B, features, n): the first layer of all models is one
        matrix product ``[W1_1; …; W1_B] @ xᵀ`` straight from the weights' row-major layout (no
        copy), the later layers are batched products ``W_b @ h_b``. With ``after`` (a child's
        name) and ``h`` (B, features, n), the forward starts after that child from ``h``.
        """
        B = next(iter(params.values())).shape[0]
        shared = h is None
        h = xb if h is None else h
        skipping = after is not None
        for name, m in self.model.named_children():
            if skipping:
                skipping = name != after
                continue
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

    def _loss_acc(self, params: dict, buffers: dict, batched, codes: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy over the evaluation data (in ``data_batch`` slices); ``params`` and
        ``buffers`` have a leading model axis. ``batched``: "stacked", "factored" (``params``: the
        layers after the first; ``codes`` (B, K)), True (vmap) or False (one model)."""
        from torch.func import vmap

        if batched == "stacked":
            fwd = lambda p, b, xb, j: self._stacked_logits(p, xb)  # noqa: E731
        elif batched == "factored":
            blocks = self._head_blocks(self.data_batch)
            c1 = torch.cat([codes, codes.new_ones(len(codes), 1)], 1)  # (B, K+1)
            out = self._head["out"]

            def fwd(p, b, xb, j):
                h = (c1 @ blocks[j]).view(len(c1), out, len(xb))  # first layer of all models, bias included
                return self._stacked_logits(p, xb, after=self.first_linear, h=h)
        elif batched:
            vfwd = vmap(self._logits, in_dims=(0, 0, None))
            fwd = lambda p, b, xb, j: vfwd(p, b, xb)  # noqa: E731
        else:
            fwd = lambda p, b, xb, j: self._logits(p, b, xb)[None]  # noqa: E731
        loss_sum, correct = 0.0, 0.0
        for j, s in enumerate(range(0, self.n_eval, self.data_batch)):
            xb, yb = self.x[s:s + self.data_batch], self.y[s:s + self.data_batch]
            loss, corr = self._batched_loss(fwd(params, buffers, xb, j), yb,
                                            classes_first=batched in ("stacked", "factored"))
            loss_sum = loss_sum + loss * len(yb)
            correct = correct + corr
        return loss_sum / self.n_eval, correct / self.n_eval

    # -- the factored formulation ----------------------------------------------------------------
    def head_bytes(self, K: int) -> int:
        """Bytes of the precomputed first-layer products for codes of K entries: (K+1) × width × n_eval floats."""
        if not self.factorable:
            return 0
        out = getattr(self.model, self.first_linear).out_features
        return 4 * (K + 1) * out * self.n_eval

    @torch.no_grad()
    def set_affine_head(self, A: torch.Tensor, b: torch.Tensor) -> bool:
        """Enable the factored formulation for models ``w = c @ A + b`` (a manifold's ``affine_head``).

        Precomputes ``P = [x @ A1_kᵀ + a1_k]_k`` and ``x @ B1ᵀ + b1`` for the first layer: (K+1) × width
        × n_eval floats (``head_bytes``), allowed up to ``HEAD_BUDGET_FRACTION`` of the budget (twice
        that while ``auto`` tries a smaller data batch). The batch size shrinks by what P takes.

        Parameters
        ----------
        A : Tensor of shape (K, D)
        b : Tensor of shape (D,)

        Returns
        -------
        bool
            Whether the factored formulation is available (False: not an MLP with a first Linear
            layer on the data, or P too large for the budget).
        """
        self.head = self._head = None
        if not self.factorable:
            return False
        A = torch.as_tensor(A).to(self.device, torch.float32)
        b = torch.as_tensor(b).to(self.device, torch.float32)
        if A.ndim != 2 or A.shape[1] != self.layout.n_params or b.shape != (self.layout.n_params,):
            raise GlobscopeError(f"affine head of shapes {tuple(A.shape)}, {tuple(b.shape)} does not fit task "
                                 f"{self.task.name!r} (D = {self.layout.n_params})")
        K = A.shape[0]
        nbytes = self.head_bytes(K)
        if 2 * nbytes > HEAD_BUDGET_FRACTION * self.budget:
            log.info("factored formulation off: its first-layer products take %.0f MiB (budget %.0f MiB)",
                     nbytes / 2**20, self.budget / 2**20)
            return False
        lin = getattr(self.model, self.first_linear)
        out, inp = lin.out_features, lin.in_features
        spans = {e.name: (int(o), e) for e, o in zip(self.layout.entries, self.layout.offsets)}
        ow, _ = spans[f"{self.first_linear}.weight"]
        A1 = torch.cat([A[:, ow:ow + out * inp], b[None, ow:ow + out * inp]]).view((K + 1) * out, inp)
        if lin.bias is not None:
            ob, _ = spans[f"{self.first_linear}.bias"]
            a1 = torch.cat([A[:, ob:ob + out], b[None, ob:ob + out]]).reshape(-1, 1)
        else:
            a1 = torch.zeros((K + 1) * out, 1, device=self.device)
        P = torch.addmm(a1, A1, self.x.flatten(1).t()).view(K + 1, out * self.n_eval)  # rows (k, j), columns i
        first = {f"{self.first_linear}.weight", f"{self.first_linear}.bias"}
        rest = [(n, o, e) for n, (o, e) in spans.items() if n not in first]
        cols = (torch.cat([torch.arange(o, o + e.size) for _, o, e in rest]) if rest
                else torch.zeros(0, dtype=torch.long))
        cols = cols.to(self.device)
        self._head = {"K": K, "out": out, "P": P, "blocks": {}, "A_rest": A[:, cols].contiguous(),
                      "b_rest": b[cols].contiguous(), "A": A, "b": b,
                      "rest": [(n, e.shape) for n, _, e in rest], "bytes": nbytes}
        self.head = (A, b)
        per_model = 4 * self.act_per_example * self.data_batch + 4 * 4 * self.layout.n_params
        self.batch_models = int(max(1, min(self.batch_models, (self.budget - 2 * nbytes) // per_model)))
        return True

    def _head_blocks(self, data_batch: int) -> list[torch.Tensor]:
        """P split by data batch: (K+1, width·n_s) blocks, contiguous (the full P without a copy)."""
        hd = self._head
        if data_batch not in hd["blocks"]:
            P = hd["P"].view(hd["K"] + 1, hd["out"], self.n_eval)
            hd["blocks"] = {data_batch: [P[:, :, s:s + data_batch].reshape(hd["K"] + 1, -1)
                                         for s in range(0, self.n_eval, data_batch)]}
        return hd["blocks"][data_batch]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Full weight vectors (B, D) of codes (B, K): ``codes @ A + b``."""
        return torch.addmm(self._head["b"], codes, self._head["A"])

    def _factored(self, codes: torch.Tensor):
        hd = self._head
        Wr = torch.addmm(hd["b_rest"], codes, hd["A_rest"])  # only the later layers' weights
        params, o = {}, 0
        for name, shape in hd["rest"]:
            n = math.prod(shape)
            params[name] = Wr[:, o:o + n].view(len(codes), *shape)
            o += n
        return self._loss_acc(params, {}, "factored", codes=codes)

    # -- the grouped formulation (CNNs) ------------------------------------------------------------
    def _grouped_forward(self, p: dict, x: torch.Tensor, stats: dict | None, calibrate: bool = False):
        """G models (leading axis of ``p``) as one network with G× the channels.

        ``calibrate``: BatchNorm in training mode, returns the running statistics (mean, unbiased
        variance of each layer's input over the batch) as ``{name.running_mean: (G, C), …}``.
        Else returns the logits (G, n, classes), BatchNorm using ``stats``.
        """
        G = next(iter(p.values())).shape[0]
        h, out_stats, flat = x, {}, False
        for name, m in self.model.named_children():
            if isinstance(m, nn.Conv2d):
                w, b = p[f"{name}.weight"], p.get(f"{name}.bias")
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1), m.stride,
                             m.padding, m.dilation, m.groups if h is x else G * m.groups)
            elif isinstance(m, nn.BatchNorm2d):
                w, b = p.get(f"{name}.weight"), p.get(f"{name}.bias")
                w = None if w is None else w.reshape(-1)
                b = None if b is None else b.reshape(-1)
                if calibrate:
                    rm = torch.zeros(h.shape[1], device=h.device)
                    rv = torch.ones(h.shape[1], device=h.device)
                    h = F.batch_norm(h, rm, rv, w, b, True, 1.0, m.eps)  # momentum 1: the batch's statistics
                    out_stats[f"{name}.running_mean"] = rm.view(G, -1)
                    out_stats[f"{name}.running_var"] = rv.view(G, -1)
                    if len(out_stats) == 2 * self._n_bn:
                        return out_stats
                else:
                    h = F.batch_norm(h, stats[f"{name}.running_mean"].reshape(-1),
                                     stats[f"{name}.running_var"].reshape(-1), w, b, False, 0.0, m.eps)
            elif isinstance(m, nn.MaxPool2d) and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2), None) \
                    and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode:
                h = _max_pool_2x2(h)
            elif isinstance(m, nn.Flatten):
                h = h.reshape(len(h), G, -1).transpose(0, 1)  # (G, n, features): each model's channels are contiguous
                flat = True
            elif isinstance(m, nn.Linear):
                w, b = p[f"{name}.weight"], p.get(f"{name}.bias")
                wt = w.transpose(1, 2)
                h = torch.baddbmm(b[:, None, :], h, wt) if b is not None else torch.bmm(h, wt)
            elif isinstance(m, nn.ReLU):
                h = h.relu_() if h is not x else h.relu()
            else:  # element-wise or per-channel
                h = m(h)
        assert flat
        return h

    def _grouped(self, W: torch.Tensor, buffers: dict | None):
        """Loss and accuracy of the models ``W`` (B, D), G at a time (``_grouped_forward``)."""
        params = self.layout.unflatten(W)
        cpu = self.device.type == "cpu"
        G = max(1, GROUP_EXAMPLES // self.data_batch) if cpu else len(W)
        losses, corrects = [], []
        for g in range(0, len(W), G):
            p = {k: v[g:g + G] for k, v in params.items()}
            if self.bn == "recompute":
                stats = self._grouped_forward(p, self.calib_x, None, calibrate=True)
            else:
                stats = {k: v[g:g + G].to(self.device, torch.float32) for k, v in (buffers or {}).items()}
            loss_sum, correct = 0.0, 0.0
            for s in range(0, self.n_eval, self.data_batch):
                xb, yb = self.x[s:s + self.data_batch], self.y[s:s + self.data_batch]
                loss, corr = self._batched_loss(self._grouped_forward(p, xb, stats), yb, classes_first=False)
                loss_sum = loss_sum + loss * len(yb)
                correct = correct + corr
            losses.append(loss_sum / self.n_eval)
            corrects.append(correct / self.n_eval)
        return torch.cat(losses), torch.cat(corrects)

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
    def _run(self, W: torch.Tensor | None, buffers: dict | None, formulation: str,
             codes: torch.Tensor | None = None):
        if formulation == "factored":
            if codes is not None and self._head is not None:
                return self._factored(codes)
            formulation = "stacked"  # full weights given: the same numbers the long way
        if W is None:
            W = self.decode_codes(codes)
        if formulation == "grouped":
            if self.bn == "reference" and buffers is None:
                raise GlobscopeError("BatchNorm reference: no buffers given for the models")
            return self._grouped(W, buffers)
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

    def candidates(self, codes: bool = False) -> list[tuple[str, int, int]]:
        """(formulation, threads, data batch) triples ``auto`` measures.

        On the CPU also one thread, and data batches of 128 examples (whose activations stay in
        cache: 3× faster for the CNN than the whole set at once). ``factored`` when the models come
        as codes of an affine head with fewer entries than the first layer's inputs (else it
        does more work, never less)."""
        forms = (["stacked"] if self.stackable else []) + ["vmap", "loop"]
        if codes and self._head is not None and \
                self._head["K"] + 1 < getattr(self.model, self.first_linear).in_features:
            forms.insert(0, "factored")
        n = self.threads or torch.get_num_threads()
        cpu = self.device.type == "cpu"
        threads = [n, 1] if cpu and n > 1 else [n]
        batches = [self.data_batch]
        if cpu and self.tune_data_batch and self.data_batch > 2 * self.SMALL_DATA_BATCH:
            batches.append(self.SMALL_DATA_BATCH)
        out = [(f, t, b) for f in forms for t in threads for b in batches]
        if self.groupable:  # on the CPU: G models × data batch ≈ GROUP_EXAMPLES examples, G = 4, 2, 1
            gb = sorted({min(b, self.data_batch) for b in (32, 64, 128)}) if cpu and self.tune_data_batch \
                else [self.data_batch]
            out = [("grouped", t, b) for t in threads for b in gb] + out
        return out

    # ``auto`` on the CPU: a screening round on a slice of the batch, then the full batch for the rest
    SCREEN_MODELS = 32  # models a screened candidate runs (past the per-call overhead, a fraction of a batch)
    SCREEN_KEEP = 2.0   # screened candidates slower per model than this × the fastest are dropped
    RETIME = 1.5        # full-batch times within this × the fastest are taken again (the better of two)

    def _time(self, cand, W, buffers, codes, n: int, warm: bool):
        """Seconds per model of candidate ``cand`` on the first ``n`` models of the batch (the loop on at
        most 4, the grouped formulation on the CPU at most 8: a few passes tell), and its output."""
        form, nthreads, self.data_batch = cand
        if form == "loop":
            n = min(n, 4)
        elif form == "grouped" and self.device.type == "cpu":
            n = min(n, 8)
        n = min(n, len(W))
        with _threads(nthreads):
            c = codes if form == "factored" else None
            b = {kk: v[:n] for kk, v in buffers.items()} if buffers else None
            if warm:
                self._run(W[:1], {kk: v[:1] for kk, v in b.items()} if b else None, form,
                          None if c is None else c[:1])
            self._sync()
            t0 = time.perf_counter()
            out = self._run(W[:n], b, form, None if c is None else c[:n])
            self._sync()
            return (time.perf_counter() - t0) / n, out, n

    def _choose(self, W, buffers, codes=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Time the candidates on the first batch and keep the fastest; returns the batch's results.

        On the CPU, when the batch holds more than ``SCREEN_MODELS`` models, each candidate first
        runs once on that many (after a one-model warm-up), and those more than ``SCREEN_KEEP`` times
        slower per model than the fastest are dropped: a slice is cheap but not the batch (the
        factored formulation gains ~1.7× per model from 32 to 246 models, the stacked one loses
        ~2× once its activations leave the cache), so it only screens. The others run on the whole
        batch (the loop on 4 models, the grouped formulation on 8), those within ``RETIME`` of the
        fastest twice (the better of two: a shared machine's stalls are not the method's); on a GPU
        every one twice. With ``codes`` the factored candidate's time includes decoding its later
        layers' weights; the others get the full weights decoded beforehand."""
        t_start = time.perf_counter()
        if W is None:
            W = self.decode_codes(codes)
        cands = self.candidates(codes is not None)
        cpu = self.device.type == "cpu"
        screen = {}
        if cpu and len(cands) > 1 and len(W) > self.SCREEN_MODELS:
            for cand in cands:
                screen[cand] = self._time(cand, W, buffers, codes, self.SCREEN_MODELS, warm=True)[0]
            fastest = min(screen.values())
            cands = sorted((c for c in cands if screen[c] <= self.SCREEN_KEEP * fastest), key=screen.get)
        per_model, results = {}, {}
        for cand in cands:
            t, out, n = self._time(cand, W, buffers, codes, len(W), warm=cand not in screen)
            per_model[cand] = t
            if n == len(W):
                results[cand] = out
        fastest = min(per_model.values())
        for cand in cands:
            if not cpu or per_model[cand] <= self.RETIME * fastest:
                t, out, n = self._time(cand, W, buffers, codes, len(W), warm=False)
                per_model[cand] = min(per_model[cand], t)
        best = min(per_model, key=per_model.get)
        self.formulation, self.threads, self.data_batch = best
        key = lambda c: f"{c[0]}@{c[1]}thr@{c[2]}"  # noqa: E731
        self.timings = {key(c): round(1e3 * v, 4) for c, v in per_model.items()}
        self.tuning = {"screen_models": self.SCREEN_MODELS if screen else None,
                       "screened": {key(c): round(1e3 * v, 4) for c, v in screen.items()},
                       "dropped": [key(c) for c in screen if c not in per_model]}
        log.info("formulation (ms/model): %s -> %s, %d thread(s), data batch %d", self.timings, *best)
        if best in results:
            loss_acc = results[best]
        else:
            with _threads(self.threads):
                loss_acc = self._run(W, buffers, self.formulation, codes)
        self.tuning["seconds"] = round(time.perf_counter() - t_start, 3)
        return loss_acc

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, W=None, buffers: dict | None = None, progress=None, should_abort=None,
                 codes=None) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy of each model over the evaluation data.

        Parameters
        ----------
        W : array or Tensor of shape (B, D)
            Weight vectors in the task's layout order. Any B; split into batches of at most
            ``batch_models``. Omitted when ``codes`` are given.
        codes : array or Tensor of shape (B, K), optional
            Instead of ``W``: codes of the affine head given to ``set_affine_head``, the models
            being ``codes @ A + b`` (the factored formulation uses them directly).
        buffers : dict of str to Tensor of shape (B, ...), optional
            Per-model buffers (BatchNorm running statistics) for ``bn="reference"``.
        progress : callable(float), optional
            Called with the fraction of models done after each batch.
        should_abort : callable() -> bool, optional
            Polled before each batch; True raises ``globscope.errors.Aborted``.

        Returns
        -------
        loss : ndarray of shape (B,), float64
            Non-finite losses (NaN, ±inf) are returned as they are.
        accuracy : ndarray of shape (B,), float64
        """
        if codes is not None:
            if self._head is None:
                raise GlobscopeError("evaluate(codes=...): no affine head set (set_affine_head)")
            codes = torch.as_tensor(codes).to(self.device, torch.float32)
            if codes.ndim != 2 or codes.shape[1] != self._head["K"]:
                raise GlobscopeError(f"codes of shape {tuple(codes.shape)} do not fit the affine head "
                                     f"(K = {self._head['K']})")
            W = None
        else:
            W = torch.as_tensor(W)
            if W.ndim != 2 or W.shape[1] != self.layout.n_params:
                raise GlobscopeError(f"weights of shape {tuple(W.shape)} do not fit task {self.task.name!r} "
                                     f"(D = {self.layout.n_params})")
            W = W.to(self.device, torch.float32)
        with contextlib.nullcontext() if self._in_session else self.session():
            return self._evaluate(W, buffers, progress, should_abort, codes)

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

    def _evaluate(self, W, buffers, progress=None, should_abort=None, codes=None):
        losses, accs = [], []
        n = len(W) if W is not None else len(codes)
        for s in range(0, n, self.batch_models):
            if should_abort and should_abort():
                raise Aborted(f"evaluation aborted after {s} of {n} models")
            Wb = W[s:s + self.batch_models] if W is not None else None
            cb = codes[s:s + self.batch_models] if codes is not None else None
            bb = {k: v[s:s + self.batch_models] for k, v in buffers.items()} if buffers else None
            if self.formulation == "auto":
                loss, acc = self._choose(Wb, bb, cb)
                torch.set_num_threads(self.threads)
            else:
                loss, acc = self._run(Wb, bb, self.formulation, cb)
            losses.append(loss.double().cpu())
            accs.append(acc.double().cpu())
            if progress:
                progress(min(s + self.batch_models, n) / n)
        return torch.cat(losses).numpy(), torch.cat(accs).numpy()

    def flops_per_model(self) -> int:
        """Floating-point operations of one model's forward pass over the evaluation data
        (``torch.utils.flop_counter``: matrix products and convolutions)."""
        from torch.utils.flop_counter import FlopCounterMode

        n = min(self.n_eval, 256)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            self.model(self.x[:n])
        return int(round(fc.get_total_flops() * self.n_eval / n))

    def choice(self) -> dict:
        """The settings that fix the numbers' bits: formulation, CPU threads, data batch, models
        per batch (what ``auto`` chose, or was given). Call it inside ``session`` (the thread
        count in effect) after the first ``evaluate``; ``pin`` restores it."""
        return {"formulation": self.formulation, "threads": int(self.threads or torch.get_num_threads()),
                "data_batch": int(self.data_batch), "batch_models": int(self.batch_models)}

    def pin(self, formulation: str, threads: int | None, data_batch: int, batch_models: int) -> None:
        """Fix the settings ``choice`` returned (e.g. the first attempt's at a resume): no timing, the
        same formulation, thread count, data batch and models per batch, hence the same bits."""
        if formulation not in FORMULATIONS or formulation == "auto":
            raise GlobscopeError(f"cannot pin formulation {formulation!r}")
        ok = {"stacked": self.stackable, "factored": self.factorable, "grouped": self.groupable}.get(formulation, True)
        if not ok:
            raise GlobscopeError(f"task {self.task.name!r}: the stored formulation {formulation!r} does not apply")
        self.formulation = formulation
        self.threads = int(threads) if threads else None
        self.data_batch = int(min(max(1, data_batch), self.n_eval))
        self.tune_data_batch = False
        self.batch_models = int(max(1, batch_models))

    def data_fingerprint(self) -> str:
        """A hash of the data the numbers depend on: the evaluation inputs and targets, and the
        calibration batch when BatchNorm statistics are recomputed (dtype, shape and bytes of each)."""
        import hashlib

        h = hashlib.sha256()
        tensors = [self.x, self.y] + ([self.calib_x] if self.probe is not None else [])
        for t in tensors:
            a = t.detach().cpu().contiguous()
            h.update(f"{a.dtype}{tuple(a.shape)}".encode())
            h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """The settings in effect (for landscape.json)."""
        return {"device": str(self.device), "formulation": self.formulation, "threads": self.threads,
                "batch_models": self.batch_models,
                "data_batch": self.data_batch, "memory_budget_bytes": self.budget, "bn": self.bn,
                "calibration_size": len(self.calib_x) if self.probe is not None else None,
                "n_eval": self.n_eval, "formulation_timings": self.timings,
                "formulation_tuning": self.tuning,
                "affine_head": ({"K": self._head["K"], "precomputed_bytes": self._head["bytes"]}
                                if self._head is not None else None)}


__all__ = ["BatchedEvaluator", "FORMULATIONS", "stackable", "first_linear", "groupable", "resolve_device",
           "memory_budget", "activation_numel"]
