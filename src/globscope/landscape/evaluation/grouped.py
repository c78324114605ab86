"""The ``grouped`` formulation, for plain CNNs (``nn.Sequential`` of Conv2d, BatchNorm2d, pooling and
element-wise layers, then Flatten and Linear layers): G models at once as one network with G× the
channels.

The first convolution of all G models is one convolution of the shared input with G·C_out output
channels, the later ones grouped convolutions (``groups = G``), BatchNorm per channel, the Linear
layers batched products. On the CPU G × data batch is kept near ``GROUP_EXAMPLES`` = 128
examples, whose activations stay in cache, and 2×2 max pooling runs as three element-wise maxima
(PyTorch's pooling kernel took most of a small CNN's time). BatchNorm recompute runs the
calibration batch through the same grouped network in training mode.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import ACTIVATIONS, PASSTHROUGH, mean_over_data, require_reference_buffers

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


def max_pool_2x2(h: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(h, 2)`` as three element-wise maxima (same values, NaN propagates).

    Parameters
    ----------
    h : Tensor of shape (..., H, W)

    Returns
    -------
    Tensor of shape (..., H // 2, W // 2)
        An odd last row or column is dropped, as ``max_pool2d`` does.
    """
    H, W = h.shape[-2] // 2 * 2, h.shape[-1] // 2 * 2
    h = h[..., :H, :W]
    return torch.maximum(torch.maximum(h[..., 0::2, 0::2], h[..., 0::2, 1::2]),
                         torch.maximum(h[..., 1::2, 0::2], h[..., 1::2, 1::2]))


def _is_max_pool_2x2(m: nn.Module) -> bool:
    return (isinstance(m, nn.MaxPool2d) and m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2), None)
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode)


class Grouped(Formulation):
    """G models of a plain CNN as one network with G× the channels (``forward``)."""

    name = "grouped"
    requirement = "an nn.Sequential CNN (Conv2d, BatchNorm2d, pooling, activations; Flatten; Linear layers)"

    @classmethod
    def applies(cls, model: nn.Module, has_batchnorm: bool) -> bool:
        return groupable(model)

    def forward(self, p: dict, x: torch.Tensor, stats: dict | None, calibrate: bool = False):
        """G models (leading axis of ``p``) as one network with G× the channels.

        Parameters
        ----------
        p : dict of str to Tensor of shape (G, ...)
            The models' parameters by name.
        x : Tensor of shape (n, C, H, W)
            The shared input.
        stats : dict of str to Tensor of shape (G, C), optional
            BatchNorm running statistics by buffer name (unused with ``calibrate``).
        calibrate : bool
            BatchNorm in training mode: returns the running statistics (mean, unbiased variance
            of each layer's input over the batch) as ``{name.running_mean: (G, C), …}``.

        Returns
        -------
        Tensor of shape (G, n, classes), or the statistics with ``calibrate``
        """
        G = next(iter(p.values())).shape[0]
        h, out_stats, flat = x, {}, False
        for name, m in self.setup.model.named_children():
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
                    if len(out_stats) == 2 * self.setup.n_bn:  # the rest of the network is not needed
                        return out_stats
                else:
                    h = F.batch_norm(h, stats[f"{name}.running_mean"].reshape(-1),
                                     stats[f"{name}.running_var"].reshape(-1), w, b, False, 0.0, m.eps)
            elif _is_max_pool_2x2(m):
                h = max_pool_2x2(h)
            elif isinstance(m, nn.Flatten):
                h = h.reshape(len(h), G, -1).transpose(0, 1)  # (G, n, features): each model's channels are contiguous
                flat = True
            elif isinstance(m, nn.Linear):
                w, b = p[f"{name}.weight"], p.get(f"{name}.bias")
                wt = w.transpose(1, 2)
                h = torch.baddbmm(b[:, None, :], h, wt) if b is not None else torch.bmm(h, wt)
            elif isinstance(m, nn.ReLU):
                h = h.relu_() if h is not x else h.relu()  # never in place on the shared input
            else:  # element-wise or per-channel
                h = m(h)
        assert flat
        return h

    def _logits(self, p: dict, stats: dict | None, xb: torch.Tensor, j: int) -> torch.Tensor:
        return self.forward(p, xb, stats)

    def run(self, W, buffers, data_batch, codes=None):
        s = self.setup
        require_reference_buffers(s, buffers)
        params = s.layout.unflatten(W)
        G = max(1, GROUP_EXAMPLES // data_batch) if s.device.type == "cpu" else len(W)
        losses, accs = [], []
        for g in range(0, len(W), G):
            p = {k: v[g:g + G] for k, v in params.items()}
            if s.bn == "recompute":
                stats = self.forward(p, s.calib_x, None, calibrate=True)
            else:
                stats = {k: v[g:g + G].to(s.device, torch.float32) for k, v in (buffers or {}).items()}
            loss, acc = mean_over_data(s, data_batch, functools.partial(self._logits, p, stats), classes_first=False)
            losses.append(loss)
            accs.append(acc)
        return torch.cat(losses), torch.cat(accs)


__all__ = ["Grouped", "groupable", "max_pool_2x2", "GROUP_EXAMPLES", "POOLS"]
