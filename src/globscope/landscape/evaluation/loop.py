"""The ``loop`` formulation, for any architecture: one model at a time, one forward pass over the
evaluation data (in ``data_batch`` slices). On a GPU it starves the device; on a small CPU a
full-batch per-model forward is already efficient for large layers."""

from __future__ import annotations

import torch

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import functional_logits, mean_over_data, model_buffers


class Loop(Formulation):
    """Models one after another, each through ``functional_call`` (BatchNorm statistics per model)."""

    name = "loop"

    def run(self, W, buffers, data_batch, codes=None):
        buffers = model_buffers(self.setup, W, buffers, per_model=True)
        params = self.setup.layout.unflatten(W)
        model = self.setup.model
        out = []
        for i in range(len(W)):
            p, b = {k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()}
            out.append(mean_over_data(self.setup, data_batch,
                                      lambda xb, j, p=p, b=b: functional_logits(model, p, b, xb)[None],
                                      classes_first=False))
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


__all__ = ["Loop"]
