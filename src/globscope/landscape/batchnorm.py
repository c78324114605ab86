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


def statistics_keys(keys) -> list[str]:
    """The running statistics among a model's float buffers ``keys`` (counters left out)."""
    return [k for k in keys if not k.endswith("num_batches_tracked")]


def has_statistics(buffers: list[dict] | None, keys) -> bool:
    """Whether every model's buffers hold all the running statistics among ``keys`` (checkpoints
    that hold parameters only do not)."""
    wanted = statistics_keys(keys)
    return buffers is not None and all(k in b for b in buffers for k in wanted)


def stack_buffers(buffers: list[dict], like: dict[str, torch.Tensor], sources=None) -> dict[str, torch.Tensor]:
    """Stack per-model buffer dicts into tensors with a leading model axis (N, …).

    Parameters
    ----------
    buffers : list of dict
        One dict per model (``CheckpointSet.load_weights``'s second value).
    like : dict of str to Tensor
        The architecture's buffers (``named_buffers()``): which to stack (the float ones, counters
        skipped) and the shape each must have.
    sources : sequence of str, optional
        What each model is (its checkpoint file), named in the error about one whose statistics
        are missing or do not fit.
    """
    def where(i):
        return sources[i] if sources is not None else f"model {i}"

    out = {}
    for k in statistics_keys(k for k, v in like.items() if v.is_floating_point()):
        missing = [i for i, b in enumerate(buffers) if k not in b]
        if missing:
            raise GlobscopeError(f"{where(missing[0])}: no BatchNorm running statistics ({k!r}; {len(missing)} of "
                                 f"{len(buffers)} checkpoints lack them), which --bn reference takes from the "
                                 "checkpoints; use --bn recompute (the default), which needs none")
        values = [torch.as_tensor(b[k]).float() for b in buffers]
        for i, v in enumerate(values):
            if v.shape != like[k].shape:
                raise GlobscopeError(f"{where(i)}: BatchNorm statistic {k!r} has shape {tuple(v.shape)}, the "
                                     f"model's has {tuple(like[k].shape)}")
        out[k] = torch.stack(values)
    return out


__all__ = ["batchnorm_modules", "check_bn_mode", "StatisticsProbe", "stack_buffers", "statistics_keys",
           "has_statistics"]
