"""Batched evaluation: the loss and accuracy of many weight vectors of one task at once."""

from globscope.landscape.evaluation.evaluator import (
    FORMULATIONS,
    BatchedEvaluator,
    activation_numel,
    first_linear,
    groupable,
    memory_budget,
    resolve_device,
    stackable,
)

__all__ = ["BatchedEvaluator", "FORMULATIONS", "stackable", "first_linear", "groupable", "resolve_device",
           "memory_budget", "activation_numel"]
