"""The ``factored`` formulation, for plain MLPs decoded by a manifold whose decoder ends in an
affine map, ``w(z) = c(z) @ A + b`` with a code ``c`` of K entries (the autoencoder's last hidden
layer, K = 128; PCA's latent point, K = d).

The first layer is linear in the code, ``x @ W1(z)ᵀ + b1(z) = Σ_k c_k P_k + P_0`` with
``P_k = x @ A1_kᵀ + a1_k`` computed once per head (``Factored.set_head``), so the first layer of B
models costs one product (B, K+1) @ (K+1, width·n) instead of (B·width, in) @ (in, n): in/(K+1)
times fewer operations (784/129 ≈ 6 for fashion-mlp with the autoencoder). The later layers'
weights are decoded from the codes (only their slice of A) and run as ``stacked``. Needs the codes
(``evaluate(codes=…)``); given full weights it runs as ``stacked``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from globscope.errors import GlobscopeError
from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import PASSTHROUGH, EvalSetup, mean_over_data
from globscope.landscape.evaluation.stacked import Stacked, stackable, stacked_logits

log = logging.getLogger(__name__)

# the precomputed first-layer products (twice over while ``auto`` tries a smaller data batch) may
# take at most this share of the memory budget
HEAD_BUDGET_FRACTION = 0.25


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


@dataclass(frozen=True, eq=False)
class AffineHead:
    """An affine head ``w = c @ A + b`` prepared for the factored formulation (read only).

    Attributes
    ----------
    K : int
        Entries of a code.
    out : int
        Width of the first layer.
    P : Tensor of shape (K+1, out·n_eval)
        The first layer's products ``x @ A1_kᵀ + a1_k`` (rows k, then ``x @ B1ᵀ + b1``), columns (j, i).
    A, b : Tensor of shape (K, D), (D,)
    A_rest, b_rest : Tensor of shape (K, D_rest), (D_rest,)
        Their columns of the later layers' parameters.
    rest : list of (str, torch.Size)
        The later layers' parameters in ``A_rest``'s column order.
    nbytes : int
        Bytes of ``P``.
    """

    K: int
    out: int
    P: torch.Tensor
    A: torch.Tensor
    b: torch.Tensor
    A_rest: torch.Tensor
    b_rest: torch.Tensor
    rest: list
    nbytes: int
    _blocks: dict = field(default_factory=dict, repr=False)

    @property
    def n_rest(self) -> int:
        """Parameters of the later layers (decoded from the codes per model)."""
        return self.A_rest.shape[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Full weight vectors (B, D) of codes (B, K): ``codes @ A + b``."""
        return torch.addmm(self.b, codes, self.A)

    def decode_rest(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """The later layers' parameters of codes (B, K), (B, ...) by name (the first layer's are
        never formed)."""
        Wr = torch.addmm(self.b_rest, codes, self.A_rest)
        params, o = {}, 0
        for name, shape in self.rest:
            n = math.prod(shape)
            params[name] = Wr[:, o:o + n].view(len(codes), *shape)
            o += n
        return params

    def blocks(self, data_batch: int, n_eval: int) -> list[torch.Tensor]:
        """P split by data batch: (K+1, out·n_s) blocks, contiguous (the full P without a copy).

        Only the last data batch's blocks are kept (``auto`` tries two at most)."""
        if data_batch not in self._blocks:
            P = self.P.view(self.K + 1, self.out, n_eval)
            self._blocks.clear()
            self._blocks[data_batch] = [P[:, :, s:s + data_batch].reshape(self.K + 1, -1)
                                        for s in range(0, n_eval, data_batch)]
        return self._blocks[data_batch]


class Factored(Formulation):
    """The first layer in code space from the precomputed ``P`` of an ``AffineHead``, the later
    layers as ``stacked``; models given as full weights run as ``stacked``."""

    name = "factored"
    requirement = "an MLP whose first layer (after Flatten) is a Linear layer on the data"

    def __init__(self, setup: EvalSetup):
        super().__init__(setup)
        self.first_linear = first_linear(setup.model) if Stacked.applies(setup.model, setup.bn is not None) else None
        self.stacked = Stacked(setup)
        self.head: AffineHead | None = None

    @classmethod
    def applies(cls, model: nn.Module, has_batchnorm: bool) -> bool:
        return Stacked.applies(model, has_batchnorm) and first_linear(model) is not None

    @classmethod
    def check(cls, task_name: str, model: nn.Module, has_batchnorm: bool) -> None:
        # not an MLP at all says more than "no Linear first layer"
        if not Stacked.applies(model, has_batchnorm):
            raise GlobscopeError(f"task {task_name!r}: the {cls.name} formulation needs {Stacked.requirement}")
        super().check(task_name, model, has_batchnorm)

    @property
    def reads_codes(self) -> bool:
        return self.head is not None

    def worth_timing(self, codes: bool) -> bool:
        """Only for codes of a head with fewer entries than the first layer's inputs (else it does
        more work, never less)."""
        return (codes and self.head is not None
                and self.head.K + 1 < getattr(self.setup.model, self.first_linear).in_features)

    def head_bytes(self, K: int) -> int:
        """Bytes of the precomputed first-layer products for codes of K entries: (K+1) × width × n_eval
        floats (0 where the formulation does not apply)."""
        if self.first_linear is None:
            return 0
        out = getattr(self.setup.model, self.first_linear).out_features
        return 4 * (K + 1) * out * self.setup.n_eval

    @torch.no_grad()
    def set_head(self, A: torch.Tensor, b: torch.Tensor, budget: int) -> AffineHead | None:
        """Prepare the head ``w = c @ A + b``: precompute ``P`` (``head_bytes``), allowed up to
        ``HEAD_BUDGET_FRACTION`` of ``budget`` (twice over: while ``auto`` tries a smaller data
        batch, two splits of it live at once).

        Parameters
        ----------
        A : Tensor of shape (K, D)
        b : Tensor of shape (D,)
        budget : int
            The evaluator's memory budget, bytes.

        Returns
        -------
        AffineHead or None
            None (and no head kept) when the formulation does not apply or ``P`` is too large.
        """
        s = self.setup
        self.head = None
        if self.first_linear is None:
            return None
        A = torch.as_tensor(A).to(s.device, torch.float32)
        b = torch.as_tensor(b).to(s.device, torch.float32)
        D = s.layout.n_params
        if A.ndim != 2 or A.shape[1] != D or b.shape != (D,):
            raise GlobscopeError(f"affine head of shapes {tuple(A.shape)}, {tuple(b.shape)} does not fit task "
                                 f"{s.task.name!r} (D = {D})")
        K = A.shape[0]
        nbytes = self.head_bytes(K)
        if 2 * nbytes > HEAD_BUDGET_FRACTION * budget:
            log.info("factored formulation off: its first-layer products take %.0f MiB (budget %.0f MiB)",
                     nbytes / 2**20, budget / 2**20)
            return None
        lin = getattr(s.model, self.first_linear)
        out, inp = lin.out_features, lin.in_features
        spans = {e.name: (int(o), e) for e, o in zip(s.layout.entries, s.layout.offsets)}
        ow, _ = spans[f"{self.first_linear}.weight"]
        A1 = torch.cat([A[:, ow:ow + out * inp], b[None, ow:ow + out * inp]]).view((K + 1) * out, inp)
        if lin.bias is not None:
            ob, _ = spans[f"{self.first_linear}.bias"]
            a1 = torch.cat([A[:, ob:ob + out], b[None, ob:ob + out]]).reshape(-1, 1)
        else:
            a1 = torch.zeros((K + 1) * out, 1, device=s.device)
        P = torch.addmm(a1, A1, s.x.flatten(1).t()).view(K + 1, out * s.n_eval)  # rows (k, j), columns i
        first = {f"{self.first_linear}.weight", f"{self.first_linear}.bias"}
        rest = [(n, o, e) for n, (o, e) in spans.items() if n not in first]
        cols = (torch.cat([torch.arange(o, o + e.size) for _, o, e in rest]) if rest
                else torch.zeros(0, dtype=torch.long))
        cols = cols.to(s.device)
        self.head = AffineHead(K=K, out=out, P=P, A=A, b=b, A_rest=A[:, cols].contiguous(),
                               b_rest=b[cols].contiguous(), rest=[(n, e.shape) for n, _, e in rest], nbytes=nbytes)
        return self.head

    def run(self, W, buffers, data_batch, codes=None):
        if codes is None or self.head is None:
            return self.stacked.run(W, buffers, data_batch)  # full weights: the same numbers the long way
        hd = self.head
        params = hd.decode_rest(codes)  # only the later layers' weights
        blocks = hd.blocks(data_batch, self.setup.n_eval)
        c1 = torch.cat([codes, codes.new_ones(len(codes), 1)], 1)  # (B, K+1)

        def logits(xb, j):
            h = (c1 @ blocks[j]).view(len(c1), hd.out, len(xb))  # first layer of all models, bias included
            return stacked_logits(self.setup.model, params, xb, after=self.first_linear, h=h)
        return mean_over_data(self.setup, data_batch, logits, classes_first=True)


__all__ = ["Factored", "AffineHead", "first_linear", "HEAD_BUDGET_FRACTION"]
