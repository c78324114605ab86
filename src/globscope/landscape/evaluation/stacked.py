"""The ``stacked`` formulation, for plain MLPs (``nn.Sequential`` of Flatten, Linear and
element-wise activations): the first layer of all models is one large matrix product
``[W1_1; …; W1_B] @ xᵀ`` (the data is shared), the later layers are batched products (``baddbmm``)."""

from __future__ import annotations

import torch
from torch import nn

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import ACTIVATIONS, PASSTHROUGH, mean_over_data


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


def stacked_logits(model: nn.Module, params: dict, xb: torch.Tensor, after: str | None = None,
                   h: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of all models of a plain MLP, classes on axis 1.

    Parameters
    ----------
    model : nn.Sequential
        A ``stackable`` architecture.
    params : dict of str to Tensor of shape (B, ...)
        The models' parameters by name.
    xb : Tensor of shape (n, ...)
        The shared input.
    after : str, optional
        A child's name: the forward starts after that child, from ``h``.
    h : Tensor of shape (B, features, n), optional
        The activations after ``after``.

    Returns
    -------
    Tensor of shape (B, C, n)

    Notes
    -----
    Activations are kept feature-major, (B, features, n): the first layer of all models is one
    matrix product ``[W1_1; …; W1_B] @ xᵀ`` straight from the weights' row-major layout (no
    copy), the later layers are batched products ``W_b @ h_b``.
    """
    B = next(iter(params.values())).shape[0]
    shared = h is None
    h = xb if h is None else h
    skipping = after is not None
    for name, m in model.named_children():
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


class Stacked(Formulation):
    """All models of a batch through one stacked forward pass of a plain MLP (``stacked_logits``)."""

    name = "stacked"
    requirement = "an nn.Sequential MLP (Flatten, Linear, element-wise activations) without BatchNorm"

    @classmethod
    def applies(cls, model: nn.Module, has_batchnorm: bool) -> bool:
        return stackable(model) and not has_batchnorm

    def run(self, W, buffers, data_batch, codes=None):
        # no buffers: the formulation applies to models without BatchNorm only
        params = self.setup.layout.unflatten(W)
        return mean_over_data(self.setup, data_batch, lambda xb, j: stacked_logits(self.setup.model, params, xb),
                              classes_first=True)


__all__ = ["Stacked", "stackable", "stacked_logits"]
