"""Batched evaluation: the loss and accuracy of many weight vectors of one task at once.

``BatchedEvaluator`` (``evaluator``) is the facade: it holds the task's architecture and data on
the device (``common.EvalSetup``), the memory budget, BatchNorm handling, and one strategy per
formulation behind one interface (``base.Formulation``: ``applies``/``check``, ``run``). Five
formulations compute the same numbers (within float rounding):

``stacked`` (``stacked``)
    For plain MLPs (``nn.Sequential`` of Flatten, Linear and element-wise activations): the first
    layer of all models is one large matrix product ``x @ [W1_1 … W1_B]ᵀ`` (the data is shared),
    the later layers are batched products (``baddbmm``).
``vmap`` (``vmap``)
    Any architecture, all models of a batch in one forward pass: ``torch.func.functional_call``
    under ``vmap`` over the stacked parameters (the first layer of all models becomes one large
    matrix product, a grouped convolution for a CNN).
``loop`` (``loop``)
    Any architecture, one model at a time, one forward pass over the whole evaluation set.
``factored`` (``factored``)
    For plain MLPs decoded by a manifold whose decoder ends in an affine map ``w = c @ A + b``
    (``set_affine_head``): the first layer runs in code space from precomputed products of the
    data, in/(K+1) times fewer operations; the later layers as ``stacked``. Needs the codes
    (``evaluate(codes=…)``); given full weights it runs as ``stacked``.
``grouped`` (``grouped``)
    For plain CNNs (Conv2d, BatchNorm2d, pooling, element-wise layers; Flatten; Linear layers):
    G models at once as one channels-last network with G× the channels, G × data batch near 512
    examples on the CPU. The first convolution is one matrix product of the shared input patches
    with all models' filters, a max pooling over non-overlapping windows after it fused in (the
    maximum of row blocks); later convolutions are grouped; a BatchNorm after a convolution is
    folded into it. BatchNorm recompute through the same network (the first convolution's
    statistics in closed form from the calibration patches' mean and covariance).

``formulation="auto"`` (``tuner.AutoTuner``) times the applicable formulations on the first batch
— on the CPU each also with one thread and with a smaller data batch, after a screening round on
a slice of the batch — and keeps the fastest (measure, don't assume): on a GPU the loop starves
the device; on a small CPU a full-batch per-model forward is already efficient for large layers.
``choice``/``pin`` record and restore what it chose, so a resumed run repeats the same bits.

``common`` holds the shared pieces: the batched loss and accuracy, the mean over data slices,
BatchNorm buffers, the device, the memory budget, the activation count and the thread context.
"""

from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import activation_numel, memory_budget, resolve_device
from globscope.landscape.evaluation.evaluator import FORMULATIONS, STRATEGIES, BatchedEvaluator
from globscope.landscape.evaluation.factored import AffineHead, Factored, first_linear
from globscope.landscape.evaluation.grouped import Grouped, groupable
from globscope.landscape.evaluation.loop import Loop
from globscope.landscape.evaluation.stacked import Stacked, stackable
from globscope.landscape.evaluation.tuner import AutoTuner, Candidate, TuningResult
from globscope.landscape.evaluation.vmap import Vmap

__all__ = ["BatchedEvaluator", "FORMULATIONS", "STRATEGIES", "Formulation", "Stacked", "Vmap", "Loop", "Factored",
           "Grouped", "AffineHead", "AutoTuner", "Candidate", "TuningResult", "stackable", "first_linear",
           "groupable", "resolve_device", "memory_budget", "activation_numel"]
