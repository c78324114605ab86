"""BatchNorm for decoded models: decoded weights carry no valid running statistics.

Two ways to supply them:

``recompute``
    Re-estimate the statistics of every decoded model from one fixed calibration batch of
    training data: the model runs in training mode over the batch, and each BatchNorm layer's
    statistics become the batch mean and the *unbiased* batch variance of its input — exactly
    what ``torch.optim.swa_utils.update_bn`` leaves in the buffers after one batch. Batched over
    models with ``vmap`` (or per model in the loop formulation).
``reference``
    Use the buffers of the nearest input model (nearest encoded point in latent space).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from globscope.errors import GlobscopeError
from globscope.names import BN_MODES
from globscope.settings import LandscapeSettings


def batchnorm_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every BatchNorm layer of ``model``, in forward-definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def check_bn_mode(mode: str | None, has_batchnorm: bool) -> str | None:
    """The effective BatchNorm mode: None for a model without BatchNorm, else ``recompute`` by default."""
    if not has_batchnorm:
        return None
    return BN_MODES.name(mode or LandscapeSettings.bn)


class StatisticsProbe:
    """A training-mode copy of a model whose BatchNorm layers report their input statistics.

    Parameters
    ----------
    model : nn.Module
        The task's architecture (not modified).

    Notes
    -----
    ``probe(params, x)`` is a pure function of the parameters (``functional_call``), so it can be
    mapped over a batch of models with ``torch.func.vmap``; it returns the running-statistics
    buffers, ``{"<bn>.running_mean": (C,), "<bn>.running_var": (C,)}`` per model.
    """

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).train()
        self.layers = batchnorm_modules(self.model)
        for _, m in self.layers:
            # normalise with batch statistics, never update (unbatched) buffers in place
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None

    def __call__(self, params: dict, x: torch.Tensor) -> dict:
        from torch.func import functional_call

        seen: list[torch.Tensor] = []
        hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0])) for _, m in self.layers]
        try:
            functional_call(self.model, params, (x,))
        finally:
            for h in hooks:
                h.remove()
        if len(seen) != len(self.layers):
            raise GlobscopeError(f"BatchNorm recompute: {len(self.layers)} BatchNorm layers but "
                                 f"{len(seen)} were called once each in the forward pass")
        out = {}
        for (name, _), h in zip(self.layers, seen):
            dims = [0] + list(range(2, h.dim()))
            out[f"{name}.running_mean"] = h.mean(dim=dims)
            out[f"{name}.running_var"] = h.var(dim=dims, unbiased=True)
        return out


def stack_buffers(buffers: list[dict], keys) -> dict[str, torch.Tensor]:
    """Stack per-model buffer dicts into tensors with a leading model axis (N, …).

    Parameters
    ----------
    buffers : list of dict
        One dict per model (``CheckpointSet.load_weights``'s second value).
    keys : iterable of str
        The float buffers wanted (running means and variances); counters are skipped.
    """
    out = {}
    for k in keys:
        if k.endswith("num_batches_tracked"):
            continue
        missing = [i for i, b in enumerate(buffers) if k not in b]
        if missing:
            raise GlobscopeError(f"BatchNorm reference: model {missing[0]} has no buffer {k!r} "
                                 "(its checkpoint holds no running statistics; use --bn recompute)")
        out[k] = torch.stack([torch.as_tensor(b[k]).float() for b in buffers])
    return out


__all__ = ["batchnorm_modules", "check_bn_mode", "StatisticsProbe", "stack_buffers"]
