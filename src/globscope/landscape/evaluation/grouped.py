"""The ``grouped`` formulation, for plain CNNs (``nn.Sequential`` of Conv2d, BatchNorm2d, pooling and
element-wise layers, then Flatten and Linear layers): G models at once as one network with G× the
channels, its activations channels-last ((n, H, W, G·C) in memory).

- The first convolution runs on the shared input as one matrix product: the input's patches
  (unfolded once, kept for the evaluation set and the calibration batch) times all G models'
  filters, (C_in·k·k, G·C_out). PyTorch's convolution took ~12× longer on the 1-channel 3×3 case
  (oneDNN ~70 ms per model over 2000 28×28 images, the product ~6).
- A max pooling over non-overlapping windows after it (moved ahead of the bias and of ReLU /
  LeakyReLU: exact, both are non-decreasing per channel and float rounding keeps that) is fused
  into the product: the patches are ordered by offset in the window, and the pooling is the
  element-wise maximum of the products' row blocks; the bias and the element-wise layers that
  follow run on each block of ``PRODUCT_VALUES`` outputs while it is in cache. PyTorch's max
  pooling kernel took longer than the convolutions.
- The later convolutions are grouped convolutions (``groups = G``) on the channels-last
  activations (oneDNN ~2× faster than channels-first); other max poolings are moved ahead of
  ReLU / LeakyReLU too, 2×2 ones run as two element-wise maxima of channels-last row and column
  pairs.
- A BatchNorm2d right after a convolution is folded into its weights and bias (eval mode: a
  per-channel affine map), so it costs nothing; other BatchNorm layers run as they are.
- Flatten gathers each model's features channels-last (the first Linear layer's weights
  permuted to match); the Linear layers are batched products; the loss is taken once for many
  data slices (``LOSS_LOGITS``).

BatchNorm recompute (the calibration batch in training mode) runs the same network: the
statistics of a BatchNorm on the first convolution come in closed form from the mean and
covariance of the calibration patches (mean ``μ·w + b``, variance ``wᵀΣw``, float64, computed
once per evaluator), each later one from its input over the calibration batch, in data slices,
the earlier BatchNorm layers folded with their batch statistics (slice moments combined in
float64). On the CPU G × data batch is kept near ``GROUP_EXAMPLES`` examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import ACTIVATIONS, PASSTHROUGH, batched_loss, require_reference_buffers

POOLS = (nn.MaxPool2d, nn.AvgPool2d)
# models × examples of one grouped pass on the CPU (its activations stay in cache)
GROUP_EXAMPLES = 512
# logits (models × examples × outputs) gathered before their loss is taken: one loss for many data slices
LOSS_LOGITS = 1 << 20
# output values of the first product taken at once on the CPU (512 KiB: they stay in cache)
PRODUCT_VALUES = 1 << 17
# the first convolution's patches of the whole evaluation set are kept up to this size (else unfolded per slice)
PATCH_CACHE_BYTES = 256 << 20


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


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def max_pool_2x2(h: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(h, 2)`` of a channels-last ``h`` as two element-wise maxima (same values, NaN
    propagates): of row pairs, then of column pairs, each over contiguous runs of channels.

    Parameters
    ----------
    h : Tensor of shape (N, C, H, W)
        Any memory format (channels-last is the fast one).

    Returns
    -------
    Tensor of shape (N, C, H // 2, W // 2), channels-last
        An odd last row or column is dropped, as ``max_pool2d`` does.
    """
    H, W = h.shape[-2] // 2 * 2, h.shape[-1] // 2 * 2
    v = h.permute(0, 2, 3, 1)  # (N, H, W, C): a view of channels-last memory
    rows = torch.maximum(v[:, 0:H:2], v[:, 1:H:2])
    return torch.maximum(rows[:, :, 0:W:2], rows[:, :, 1:W:2]).permute(0, 3, 1, 2)


def _is_max_pool_2x2(m: nn.Module) -> bool:
    return (isinstance(m, nn.MaxPool2d) and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2), None)
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode)


def _is_tiling_max_pool(m: nn.Module) -> bool:
    """A max pooling over non-overlapping windows (stride = window, no padding, no dilation, floor)."""
    return (isinstance(m, nn.MaxPool2d) and _pair(m.stride if m.stride is not None else m.kernel_size)
            == _pair(m.kernel_size) and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1)
            and not m.ceil_mode)


def _order_preserving(m: nn.Module) -> bool:
    """Element-wise layers with ``f(max(a, b)) == max(f(a), f(b))`` bit for bit (max pooling may go first)."""
    return isinstance(m, nn.ReLU) or (isinstance(m, nn.LeakyReLU) and m.negative_slope >= 0)


@dataclass(frozen=True)
class Step:
    """One operation of the grouped network.

    Attributes
    ----------
    kind : str
        ``patches`` (the first convolution: the shared patches times all models' filters),
        ``bias`` (its bias, added after the product), ``conv`` (a later, grouped convolution),
        ``bn`` (a BatchNorm2d not folded into a convolution), ``pool``, ``act`` (element-wise),
        ``flatten``, ``linear``.
    name : str
        The module's name in the model (its parameters' prefix).
    module : nn.Module
    bn : str or None
        For ``patches``, ``bias`` and ``conv``: the BatchNorm2d folded into the convolution.
    pool : (int, int) or None
        For ``patches``: the window (= stride) of a max pooling that follows, taken over the
        products' row blocks (the patches ordered window offset first).
    """

    kind: str
    name: str
    module: nn.Module
    bn: str | None = None
    pool: tuple[int, int] | None = None


def plan(model: nn.Module) -> list[Step]:
    """The steps of the grouped network of a ``groupable`` model (pass-through layers dropped, a
    BatchNorm2d right after a convolution folded into it, max pooling moved ahead of the first
    convolution's bias and of order-preserving activations)."""
    kids = [(n, m) for n, m in model.named_children() if not isinstance(m, PASSTHROUGH)]
    steps: list[Step] = []
    for i, (name, m) in enumerate(kids):
        if isinstance(m, nn.Conv2d):
            nxt = kids[i + 1] if i + 1 < len(kids) else None
            bn = nxt[0] if nxt is not None and isinstance(nxt[1], nn.BatchNorm2d) else None
            if steps:
                steps.append(Step("conv", name, m, bn))
            else:
                steps += [Step("patches", name, m, bn), Step("bias", name, m, bn)]
        elif isinstance(m, nn.BatchNorm2d):
            if not isinstance(kids[i - 1][1], nn.Conv2d):
                steps.append(Step("bn", name, m))
        elif isinstance(m, POOLS):
            steps.append(Step("pool", name, m))
        elif isinstance(m, nn.Flatten):
            steps.append(Step("flatten", name, m))
        elif isinstance(m, nn.Linear):
            steps.append(Step("linear", name, m))
        else:
            steps.append(Step("act", name, m))
    i = 1
    while i < len(steps):  # max pooling first, on fewer values
        s, prev = steps[i], steps[i - 1]
        if (s.kind == "pool" and isinstance(s.module, nn.MaxPool2d)
                and (prev.kind == "bias" or prev.kind == "act" and _order_preserving(prev.module))):
            steps[i - 1], steps[i] = s, prev
            i = max(1, i - 1)
        else:
            i += 1
    if len(steps) > 1 and _is_tiling_max_pool(steps[1].module):  # into the first product
        m = steps[1].module
        steps[0:2] = [Step("patches", steps[0].name, steps[0].module, steps[0].bn, _pair(m.kernel_size))]
    return steps


def _bn_affine(gamma, beta, mean, var, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm as ``x * scale + shift`` (each like ``mean``)."""
    scale = torch.rsqrt(var + eps)
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale
    return scale, shift if beta is None else shift + beta


class Grouped(Formulation):
    """G models of a plain CNN as one channels-last network with G× the channels (``forward``)."""

    name = "grouped"
    requirement = "an nn.Sequential CNN (Conv2d, BatchNorm2d, pooling, activations; Flatten; Linear layers)"

    def __init__(self, setup):
        super().__init__(setup)
        self.steps = plan(setup.model) if groupable(setup.model) else []
        # the bias and element-wise layers right after the first product (applied by _product)
        self._epilogue: list[Step] = []
        for st in self.steps[1:]:
            if st.kind not in ("bias", "act"):
                break
            self._epilogue.append(st)
        convs = [st.module for st in self.steps if st.kind in ("patches", "conv")]
        self._flat_channels = convs[-1].out_channels if convs else 1  # channels at Flatten
        self._patches: dict = {}  # "eval", "calib": the first convolution's patches; "moments" of the calibration ones

    @classmethod
    def applies(cls, model: nn.Module, has_batchnorm: bool) -> bool:
        return groupable(model)

    # -- the first convolution's patches ---------------------------------------------------------
    def _first_geometry(self, shape) -> tuple[tuple[int, int], int]:
        """The first convolution's output size (H', W') on inputs of ``shape`` (n, C_in, H, W), and
        the values of a patch, C_in·k·k."""
        m = self.steps[0].module
        k, d, pad, s = _pair(m.kernel_size), _pair(m.dilation), _pair(m.padding), _pair(m.stride)
        out = tuple((shape[2 + i] + 2 * pad[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
        return out, shape[1] * k[0] * k[1]

    def unfold(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The first convolution's input patches of ``x`` (n, C_in, H, W), in the order of the filters'
        values: (n·H'·W', C_in·k·k); and the output size (H', W')."""
        m = self.steps[0].module
        P = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # (n, C_in·k·k, H'·W')
        return P.transpose(1, 2).reshape(-1, P.shape[1]), self._first_geometry(x.shape)[0]

    def patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The first product's patches of ``x`` (n, C_in, H, W): (b, n·H''·W'', C_in·k·k), b row blocks,
        and the size (H'', W'') of the product's output.

        Without a pooling in the product: one block, (H'', W'') = (H', W'). With a (ph, pw) max
        pooling: ph·pw blocks, one per offset in the window, each over the pooled positions
        (n, H'', W'') = (n, H' // ph, W' // pw); the pooling is the element-wise maximum of the
        blocks' products (a last row or column the windows do not reach is left out, as
        ``max_pool2d`` does)."""
        st = self.steps[0]
        P, (h, w) = self.unfold(x)  # (n·h·w, K)
        if st.pool is None:
            return P[None], (h, w)
        n, K = len(x), P.shape[1]
        ph, pw = st.pool
        H, W = h // ph, w // pw
        P = P.view(n, h, w, K)[:, :H * ph, :W * pw].reshape(n, H, ph, W, pw, K)
        return P.permute(2, 4, 0, 1, 3, 5).reshape(ph * pw, n * H * W, K), (H, W)

    def _eval_patches(self, xb: torch.Tensor, start: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patches of the evaluation examples ``start …`` (``xb``): rows of those of the whole set,
        kept when they take at most ``PATCH_CACHE_BYTES``."""
        if "eval" not in self._patches:
            x = self.setup.x
            (h, w), K = self._first_geometry(x.shape)
            self._patches["eval"] = self.patches(x) if len(x) * h * w * K * 4 <= PATCH_CACHE_BYTES else None
        kept = self._patches["eval"]
        if kept is None:
            return self.patches(xb)
        P, out = kept
        rows = out[0] * out[1]
        return P[:, start * rows:(start + len(xb)) * rows], out

    def _calib_patches(self):
        if "calib" not in self._patches:
            self._patches["calib"] = self.patches(self.setup.calib_x)
        return self._patches["calib"]

    def _calib_moments(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Mean (K,) and covariance (K, K) of the calibration patches, float64; and their count."""
        if "moments" not in self._patches:
            P = self.unfold(self.setup.calib_x)[0].double()  # every output position (BatchNorm comes before pooling)
            mu = P.mean(0)
            Pc = P - mu
            self._patches["moments"] = (mu, Pc.T @ Pc / len(P), len(P))
        return self._patches["moments"]

    # -- weights ---------------------------------------------------------------------------------
    def _first_conv_stats(self, p: dict) -> dict:
        """Training-mode statistics of the BatchNorm on the first convolution, in closed form from the
        calibration patches: ``{bn.running_mean, bn.running_var (unbiased), bn.batch_var (biased)}``, (G, C)."""
        st = self.steps[0]
        w, b = p[f"{st.name}.weight"], p.get(f"{st.name}.bias")
        G, C = w.shape[:2]
        mu, cov, M = self._calib_moments()
        W = w.reshape(G * C, -1).T.double()  # (K, G·C)
        mean = mu @ W
        if b is not None:
            mean = mean + b.reshape(-1).double()
        var = ((cov @ W) * W).sum(0).clamp_min(0)
        return {f"{st.bn}.running_mean": mean.float().view(G, C),
                f"{st.bn}.running_var": (var * M / max(M - 1, 1)).float().view(G, C),
                f"{st.bn}.batch_var": var.float().view(G, C)}

    def _fold(self, p: dict, st: Step, stats: dict, var_key: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weights (G, C_out, …) and bias (G, C_out) of convolution ``st`` with its BatchNorm folded in
        (statistics ``stats[bn.running_mean]`` and ``stats[bn.<var_key>]``; in the calibration pass,
        ``var_key="batch_var"``, unfolded while unknown: the pass stops before that BatchNorm)."""
        w, b = p[f"{st.name}.weight"], p.get(f"{st.name}.bias")
        if st.bn is None or (var_key == "batch_var" and f"{st.bn}.running_mean" not in stats):
            return w, b
        scale, shift = _bn_affine(p.get(f"{st.bn}.weight"), p.get(f"{st.bn}.bias"), stats[f"{st.bn}.running_mean"],
                                  stats[f"{st.bn}.{var_key}"], self.setup.model.get_submodule(st.bn).eps)
        w = w * scale.view(*scale.shape, *([1] * (w.dim() - 2)))
        return w, shift if b is None else torch.addcmul(shift, b, scale)

    def prepare(self, p: dict, stats: dict | None, var_key: str = "running_var") -> dict:
        """The G models' weights as the grouped network uses them, by step name.

        Parameters
        ----------
        p : dict of str to Tensor of shape (G, ...)
            The models' parameters by name.
        stats : dict of str to Tensor of shape (G, C), optional
            BatchNorm statistics by buffer name (``<bn>.running_mean``, ``<bn>.<var_key>``); a
            BatchNorm after a convolution whose statistics are missing stays unfolded.
        var_key : str
            ``running_var``, or ``batch_var`` (the biased variance training mode normalises with).
        """
        q, stats, flat = {}, stats or {}, None
        for st in self.steps:
            if st.kind == "patches":
                w, b = self._fold(p, st, stats, var_key)
                G, C = w.shape[:2]
                q[st.name] = w.reshape(G * C, -1).T.contiguous()  # (K, G·C)
                q[f"{st.name}.bias"] = None if b is None else b.reshape(-1)
            elif st.kind == "conv":
                w, b = self._fold(p, st, stats, var_key)
                q[st.name] = (w.reshape(-1, *w.shape[2:]), None if b is None else b.reshape(-1))
            elif st.kind == "flatten":
                flat = st
            elif st.kind == "linear":
                w, b = p[f"{st.name}.weight"], p.get(f"{st.name}.bias")
                if flat is not None:  # the features channels-last, as the flattened activations come
                    G, O, D = w.shape
                    w = w.view(G, O, self._flat_channels, D // self._flat_channels).transpose(2, 3).reshape(G, O, D)
                    flat = None
                q[st.name] = (w.transpose(1, 2), None if b is None else b[:, None, :])
        return q

    # -- the network -----------------------------------------------------------------------------
    def forward(self, p: dict, q: dict, stats: dict | None, P: torch.Tensor, out_hw: tuple[int, int],
                var_key: str = "running_var", stop: str | None = None) -> torch.Tensor:
        """G models (leading axis of ``p``) as one channels-last network with G× the channels.

        Parameters
        ----------
        p : dict of str to Tensor of shape (G, ...)
            The models' parameters by name (BatchNorm weights of the layers not folded).
        q : dict
            ``prepare(p, stats, var_key)``.
        stats : dict of str to Tensor of shape (G, C), optional
            BatchNorm statistics by buffer name (for the layers not folded).
        P : Tensor of shape (b, n·H''·W'', K)
            The first product's patches of the n input examples (``patches``).
        out_hw : (H'', W'')
        var_key : str
            The variance the BatchNorm layers not folded use (``prepare``'s).
        stop : str, optional
            A BatchNorm's name: return its input (channels-last), the rest is not needed.

        Returns
        -------
        Tensor of shape (G, n, classes), or BatchNorm ``stop``'s input (n, G·C, H, W)
        """
        G = next(iter(p.values())).shape[0]
        n = P.shape[1] // (out_hw[0] * out_hw[1])
        h = None
        for st in self.steps:
            m = st.module
            if st.kind == "patches":
                h = self._product(P, q[st.name], q[f"{st.name}.bias"])
                h = h.view(n, *out_hw, -1).permute(0, 3, 1, 2)  # channels-last (n, G·C, H'', W'')
                if stop is not None and stop == st.bn:
                    return h
            elif st.kind in ("bias", "act") and st in self._epilogue:
                pass  # done by _product
            elif st.kind == "bias":  # after a max pooling that is not fused into the product
                if q[f"{st.name}.bias"] is not None:
                    h = h.add_(q[f"{st.name}.bias"].view(1, -1, 1, 1))
            elif st.kind == "conv":
                w, b = q[st.name]
                h = F.conv2d(h, w, b, m.stride, m.padding, m.dilation, G * m.groups)
                if stop is not None and stop == st.bn:
                    return h
            elif st.kind == "bn":
                if stop == st.name:
                    return h
                w, b = p.get(f"{st.name}.weight"), p.get(f"{st.name}.bias")
                h = F.batch_norm(h, stats[f"{st.name}.running_mean"].reshape(-1),
                                 stats[f"{st.name}.{var_key}"].reshape(-1),
                                 None if w is None else w.reshape(-1), None if b is None else b.reshape(-1),
                                 False, 0.0, m.eps)
            elif st.kind == "pool":
                h = max_pool_2x2(h) if _is_max_pool_2x2(m) else m(h)
            elif st.kind == "flatten":  # (G, n, features), each model's channels-last
                hw = h.shape[2] * h.shape[3]
                h = h.permute(0, 2, 3, 1).reshape(n, hw, G, -1).permute(2, 0, 1, 3).reshape(G, n, -1)
            elif st.kind == "linear":
                wt, b = q[st.name]
                h = torch.baddbmm(b, h, wt) if b is not None else torch.bmm(h, wt)
            elif isinstance(m, nn.ReLU):
                h = h.relu_()
            else:  # element-wise or per-channel
                h = m(h)
        assert stop is None, f"BatchNorm {stop!r} not reached"
        return h

    def _product(self, P: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The first convolution: the element-wise maximum over the row blocks of ``P`` (blocks, r, K)
        of their products with ``W`` (K, G·C), then the bias ``b`` (G·C,) and the element-wise
        layers that follow (``_epilogue``): (r, G·C). ``PRODUCT_VALUES`` output values at a time
        on the CPU (they stay in cache through all of it), all at once on a GPU."""
        r = P.shape[1]
        h = torch.empty(r, W.shape[1], device=W.device)
        step = max(1, PRODUCT_VALUES // W.shape[1]) if W.device.type == "cpu" else r
        tmp = torch.empty(min(step, r), W.shape[1], device=W.device) if len(P) > 1 else None
        for a in range(0, r, step):
            hb, Pa = h[a:a + step], P[:, a:a + step]
            torch.mm(Pa[0], W, out=hb)
            for Pb in Pa[1:]:
                torch.maximum(hb, torch.mm(Pb, W, out=tmp[:len(hb)]), out=hb)
            for st in self._epilogue:
                if st.kind == "bias":
                    if b is not None:
                        hb.add_(b)
                elif isinstance(st.module, nn.ReLU):
                    hb.relu_()
                else:
                    hb[:] = st.module(hb)
        return h

    def _batch_moments(self, p: dict, stats: dict, bn: str, data_batch: int) -> None:
        """Training-mode statistics of BatchNorm ``bn`` over the calibration batch into ``stats``
        (``<bn>.running_mean``, ``.running_var`` unbiased, ``.batch_var`` biased): its input taken
        ``data_batch`` examples at a time (the layers before it with the batch statistics already
        in ``stats``), each slice's mean and sum of squared deviations combined in float64 (Chan
        et al.)."""
        q = self.prepare(p, stats, "batch_var")
        P_all, out = self._calib_patches()
        rows = out[0] * out[1]
        n_cal = len(self.setup.calib_x)
        count, mean, m2 = 0, 0.0, 0.0
        for a in range(0, n_cal, data_batch):
            P = P_all[:, a * rows:(a + data_batch) * rows]
            h = self.forward(p, q, stats, P, out, "batch_var", stop=bn)
            h = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])  # (n·H·W, G·C)
            k = len(h)
            mu = h.mean(0)
            d = (h - mu).square_().sum(0).double()
            mu = mu.double()
            if count:
                delta = mu - mean
                m2 = m2 + d + delta.square() * (count * k / (count + k))
                mean = mean + delta * (k / (count + k))
            else:
                mean, m2 = mu, d
            count += k
        G = next(iter(p.values())).shape[0]
        stats[f"{bn}.running_mean"] = mean.float().view(G, -1)
        stats[f"{bn}.running_var"] = (m2 / max(count - 1, 1)).float().view(G, -1)
        stats[f"{bn}.batch_var"] = (m2 / count).float().view(G, -1)

    def statistics(self, p: dict, data_batch: int) -> dict:
        """Recomputed BatchNorm statistics (G, C) by buffer name of the G models ``p``: the
        calibration batch in training mode, ``data_batch`` examples a pass (a BatchNorm on the
        first convolution in closed form, the others one after another, each from its input)."""
        first = self.steps[0]
        stats = self._first_conv_stats(p) if first.bn is not None else {}
        for st in self.steps:
            bn = st.name if st.kind == "bn" else st.bn if st.kind == "conv" else None
            if bn is not None:
                self._batch_moments(p, stats, bn, data_batch)
        return {k: v for k, v in stats.items() if not k.endswith(".batch_var")}

    def mean_over_data(self, p: dict, q: dict, stats: dict | None, data_batch: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy (G,) of the G models over the evaluation data, ``data_batch`` examples
        a pass; the loss is taken once per ``LOSS_LOGITS`` logits (its dozen small operations
        per slice of a few dozen examples took ~10 % of the time)."""
        s = self.setup
        loss_sum, correct, pending, first = 0.0, 0.0, [], 0
        for a in range(0, s.n_eval, data_batch):
            xb = s.x[a:a + data_batch]
            P, out = self._eval_patches(xb, a)
            pending.append(self.forward(p, q, stats, P, out))
            held = sum(t.shape[1] for t in pending)
            if held * pending[0][0].numel() >= LOSS_LOGITS or a + len(xb) >= s.n_eval:
                logits = pending[0] if len(pending) == 1 else torch.cat(pending, 1)
                loss, corr = batched_loss(logits, s.y[first:first + held], s.loss_fn, classes_first=False)
                loss_sum = loss_sum + loss * held
                correct = correct + corr
                pending, first = [], first + held
        return loss_sum / s.n_eval, correct / s.n_eval

    def run(self, W, buffers, data_batch, codes=None):
        s = self.setup
        require_reference_buffers(s, buffers)
        params = s.layout.unflatten(W)
        G = max(1, GROUP_EXAMPLES // data_batch) if s.device.type == "cpu" else len(W)
        losses, accs = [], []
        for g in range(0, len(W), G):
            p = {k: v[g:g + G] for k, v in params.items()}
            if s.bn == "recompute":
                stats = self.statistics(p, data_batch)
            else:
                stats = {k: v[g:g + G].to(s.device, torch.float32) for k, v in (buffers or {}).items()}
            loss, acc = self.mean_over_data(p, self.prepare(p, stats), stats, data_batch)
            losses.append(loss)
            accs.append(acc)
        return torch.cat(losses), torch.cat(accs)


__all__ = ["Grouped", "groupable", "plan", "Step", "max_pool_2x2", "GROUP_EXAMPLES", "POOLS"]
