"""The ``vmap`` formulation, for any architecture: all models of a batch in one forward pass,
``torch.func.functional_call`` under ``vmap`` over the stacked parameters. The data is shared, so
the first layer of all models becomes one large matrix product (a grouped convolution for a CNN);
BatchNorm statistics are recomputed under ``vmap`` too."""

from __future__ import annotations

import functools

from torch.func import vmap

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import functional_logits, mean_over_data, model_buffers


class Vmap(Formulation):
    """All models of a batch at once: ``functional_call`` vmapped over their parameters and buffers."""

    name = "vmap"

    def run(self, W, buffers, data_batch, codes=None):
        buffers = model_buffers(self.setup, W, buffers)
        params = self.setup.layout.unflatten(W)
        logits = vmap(functools.partial(functional_logits, self.setup.model), in_dims=(0, 0, None))
        return mean_over_data(self.setup, data_batch, lambda xb, j: logits(params, buffers, xb), classes_first=False)


__all__ = ["Vmap"]
