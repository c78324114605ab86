"""The interface every formulation implements (see the package's notes for the five of them)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from globscope.errors import GlobscopeError
from globscope.landscape.evaluation.common import EvalSetup


class Formulation:
    """One way to compute the loss and accuracy of a batch of models; all give the same numbers
    (within float rounding), at different speeds.

    Parameters
    ----------
    setup : EvalSetup
        The task's architecture and data on the device (shared, read only).

    Attributes
    ----------
    name : str
        As in ``FORMULATIONS`` (``BatchedEvaluator(formulation=name)``).
    requirement : str
        What the model must be, for the error message of ``check``.
    reads_codes : bool
        Whether ``run`` takes the models as codes of an affine head (then ``W`` may be None).
    """

    name: ClassVar[str]
    requirement: ClassVar[str] = ""
    reads_codes: bool = False

    def __init__(self, setup: EvalSetup):
        self.setup = setup

    @classmethod
    def applies(cls, model: nn.Module, has_batchnorm: bool) -> bool:
        """Whether this formulation can evaluate models of the architecture ``model``."""
        return True

    @classmethod
    def check(cls, task_name: str, model: nn.Module, has_batchnorm: bool) -> None:
        """Raise a GlobscopeError saying what is missing unless ``applies``."""
        if not cls.applies(model, has_batchnorm):
            raise GlobscopeError(f"task {task_name!r}: the {cls.name} formulation needs {cls.requirement}")

    def worth_timing(self, codes: bool) -> bool:
        """Whether ``auto`` should time it (it applies, and may be the fastest) for models given as
        codes (``codes``) or as full weights."""
        return self.applies(self.setup.model, self.setup.bn is not None)

    def run(self, W: torch.Tensor | None, buffers: dict | None, data_batch: int,
            codes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy of a batch of models over the evaluation data.

        Parameters
        ----------
        W : Tensor of shape (B, D)
            Weight vectors in the task's layout order, on the device (None only when
            ``reads_codes`` and ``codes`` are given).
        buffers : dict of str to Tensor of shape (B, ...), optional
            Per-model buffers (BatchNorm running statistics) for ``bn="reference"``.
        data_batch : int
            Evaluation examples per forward pass.
        codes : Tensor of shape (B, K), optional
            The models as codes of an affine head (used by the formulations that ``reads_codes``).

        Returns
        -------
        loss, accuracy : Tensor of shape (B,)
            Means over the evaluation data; non-finite losses as they come.
        """
        raise NotImplementedError


__all__ = ["Formulation"]
