"""Mode-connectivity curves between two trained models (Garipov et al. 2018, "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs").

Two solutions ``w0``, ``w1`` (flat weight vectors in a task's layout order) are joined by a curve
``φ_θ(t)``, ``t ∈ [0, 1]``, with ``φ(0) = w0`` and ``φ(1) = w1`` fixed and one control point ``θ``
trained to minimise ``E_{t~U(0,1)} L(φ_θ(t))`` on the task's training data. If the curve's loss
stays low along ``t`` while the straight line between the same ends climbs over a barrier, the
two minima belong to one connected low-loss valley; a landscape that draws them as separate basins
is then a property of the projection, not of the network.

``Curve`` holds a curve; ``train_curve`` trains its control point; ``evaluate_along`` measures the
real loss along it with a ``BatchedEvaluator``; ``barrier`` is the loss barrier of a loss profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import functional_call

from globscope.errors import Aborted, GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe
from globscope.settings import ConnectSettings
from globscope.tasks import Task

CURVES = ("bezier", "polychain")


def _as_vector(w, what: str) -> torch.Tensor:
    """``w`` as a 1-D float32 CPU tensor (a tensor that is already one is returned as it is,
    keeping its autograd graph)."""
    v = torch.as_tensor(w, dtype=torch.float32, device="cpu")
    if v.ndim != 1:
        raise GlobscopeError(f"curve: {what} must be a weight vector of shape (D,), not {tuple(v.shape)}")
    return v


def _times(t) -> torch.Tensor:
    """``t`` as a (T,) float64 tensor, checked to lie in [0, 1]."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise GlobscopeError("curve: t must lie in [0, 1]")
    return t


@dataclass(eq=False)  # tensors have no single truth value: curves compare by identity
class Curve:
    """A curve in weight space from ``start`` (t = 0) to ``end`` (t = 1) bent by one control point.

    Parameters
    ----------
    kind : {"bezier", "polychain"}
        ``bezier``: the quadratic Bezier curve ``(1−t)² w0 + 2t(1−t) θ + t² w1`` (it passes near θ,
        through ``(w0 + 2θ + w1)/4`` at t = ½). ``polychain``: the polygonal chain ``w0 → θ → w1``,
        linear on [0, ½] and on [½, 1], through θ at t = ½.
    start, control, end : Tensor of shape (D,), float32
        ``w0``, ``θ``, ``w1``.
    history : list of float
        ``train_curve``'s training loss at each step (empty for an untrained curve).
    """

    kind: str
    start: torch.Tensor
    control: torch.Tensor
    end: torch.Tensor
    history: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in CURVES:
            raise GlobscopeError(f"curve: unknown kind {self.kind!r}; the kinds are {', '.join(CURVES)}")
        self.start = _as_vector(self.start, "start")
        self.control = _as_vector(self.control, "control")
        self.end = _as_vector(self.end, "end")
        sizes = {len(self.start), len(self.control), len(self.end)}
        if len(sizes) > 1:
            raise GlobscopeError(f"curve: start, control and end differ in length (D = {len(self.start)}, "
                                 f"{len(self.control)}, {len(self.end)})")

    @property
    def n_params(self) -> int:
        """D, the length of the weight vectors."""
        return len(self.start)

    def coefficients(self, t) -> torch.Tensor:
        """Weights of ``(start, control, end)`` at each t.

        Parameters
        ----------
        t : array-like of shape (T,), in [0, 1]

        Returns
        -------
        Tensor of shape (T, 3), float64
            Each row sums to 1.
        """
        t = _times(t)
        if self.kind == "bezier":
            return torch.stack([(1 - t) ** 2, 2 * t * (1 - t), t ** 2], 1)
        first = t <= 0.5
        zero = torch.zeros_like(t)
        return torch.stack([torch.where(first, 1 - 2 * t, zero), torch.where(first, 2 * t, 2 - 2 * t),
                            torch.where(first, zero, 2 * t - 1)], 1)

    def points(self, t) -> torch.Tensor:
        """The curve's weight vectors ``φ(t)``.

        Parameters
        ----------
        t : array-like of shape (T,), in [0, 1]

        Returns
        -------
        Tensor of shape (T, D), float32
            Differentiable in ``control``. Rows at t = 0 and t = 1 are ``start`` and ``end`` bit
            for bit.
        """
        t = _times(t)
        P = self.coefficients(t).to(self.control.dtype) @ torch.stack([self.start, self.control, self.end])
        # 1·w0 + 0·θ + 0·w1 is w0 except for its signed zeros (−0 + 0 = +0): the ends are copied
        P = torch.where((t == 0)[:, None], self.start, P)
        return torch.where((t == 1)[:, None], self.end, P)


def line(start, end) -> Curve:
    """The straight line from ``start`` to ``end``, ``(1−t) w0 + t w1``, as a Curve.

    It is the Bezier curve with θ at the midpoint ``(w0 + w1)/2`` — exactly what ``train_curve``
    starts from, so the line is the untrained curve. (The polychain with the same θ is the same
    line; the two differ only by float rounding.)

    Parameters
    ----------
    start, end : array-like of shape (D,)

    Returns
    -------
    Curve
    """
    start, end = _as_vector(start, "start"), _as_vector(end, "end")
    if len(start) != len(end):
        raise GlobscopeError(f"curve: start (D = {len(start)}) and end (D = {len(end)}) differ in length")
    return Curve("bezier", start, (start + end) / 2, end)


def _batches(n: int, size: int, gen: torch.Generator):
    """Endless index batches of ``size`` over ``n`` examples, a fresh permutation each pass (the
    incomplete last batch of a pass is dropped: BatchNorm statistics of one example are undefined)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n - size + 1, size):
            yield perm[s:s + size]


def train_curve(task: Task, start, end, kind: str = ConnectSettings.curve, steps: int = ConnectSettings.steps,
                lr: float = ConnectSettings.lr,
                t_per_step: int = 4, batch_size: int = 128, seed: int = 0,
                progress: Callable[[float], None] | None = None,
                should_abort: Callable[[], bool] | None = None) -> Curve:
    """Train the control point of a curve from ``start`` to ``end`` on the task's training data.

    Parameters
    ----------
    task : Task
    start, end : array-like of shape (D,)
        The two models' weight vectors in ``task.layout`` order (kept fixed).
    kind : {"bezier", "polychain"}
    steps : int
        Optimiser steps.
    lr : float
        Adam's learning rate.
    t_per_step : int
        Points of the curve per step; their mean loss is the step's estimate of ``E_t L(φ(t))``.
    batch_size : int
        Training examples per step (at most the training set), the same mini-batch for every t.
    seed : int
        Fixes the data order, the t's and anything random in the model's forward pass (dropout).
    progress : callable(float), optional
        Called with the fraction of steps done after each step.
    should_abort : callable() -> bool, optional
        Polled before each step; True raises ``globscope.errors.Aborted``.

    Returns
    -------
    Curve
        The trained curve (``control`` detached), its ``history`` the mean training loss of each step.

    Notes
    -----
    θ starts at the midpoint, i.e. on the straight line (``line``). Each step draws ``t_per_step``
    stratified t's — one uniform in each of ``t_per_step`` equal sub-intervals of [0, 1], so each is
    still U(0, 1) and their mean loss is an unbiased estimate of the expectation, with less
    variance than independent draws and the whole curve covered every step. The model runs at one
    t after the other (``functional_call``): with 4 t's a step took as long as under ``vmap`` on
    digits-mlp (1.3 ms) and less on fashion-cnn (76 against 99 ms). Networks with BatchNorm run in
    training mode, normalising with the mini-batch's own statistics (the network a curve is
    trained as, as in Garipov et al.); the layers keep no running buffers, so none is changed.

    The optimiser is Adam: its step is a distance in weight space, whatever the scale of the loss's
    gradient, and within a few hundred steps it lowered the curve's loss far more than SGD with
    momentum. The defaults (300 steps, Adam at 0.01) were measured on digits-mlp between two models
    trained as the zoo trains them (SGD, batch 32, lr 0.05, momentum 0.9, 1350 steps, seeds 1 and
    2), on one CPU thread: the straight line's evaluation loss peaks at 0.375 (barrier 0.330, end
    losses 0.056 and 0.035); after 0.5 s of training the curve's maximum is its end's 0.056
    (barrier 0). 100 steps leave a barrier of 0.019; SGD with momentum 0.9 at lr 0.01, 0.1 and 0.3
    leaves 0.097, 0.043 and 0.022 after 300 steps.

    Deterministic given ``seed``; the caller's global random state is left as it was.
    """
    if kind not in CURVES:
        raise GlobscopeError(f"curve: unknown kind {kind!r}; the kinds are {', '.join(CURVES)}")
    if steps < 1 or t_per_step < 1 or batch_size < 1:
        raise GlobscopeError("train_curve: steps, t_per_step and batch_size must be positive")
    base = line(start, end)
    D = task.layout.n_params
    if base.n_params != D:
        raise GlobscopeError(f"train_curve: weight vectors of length {base.n_params} do not fit task "
                             f"{task.name!r} (D = {D})")
    train = task.train_data
    batch = min(batch_size, len(train))
    control = base.control.clone().requires_grad_(True)
    curve = Curve(kind, base.start, control, base.end)
    history: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the probe's copy of the model: training mode, BatchNorm on batch statistics, no buffers
        model = StatisticsProbe(task.make_model()).model
        for p in model.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        batches = _batches(len(train), batch, gen)
        opt = torch.optim.Adam([control], lr=lr)
        for step in range(steps):
            if should_abort and should_abort():
                raise Aborted(f"curve training aborted after {step} of {steps} steps")
            idx = next(batches)
            t = (torch.arange(t_per_step) + torch.rand(t_per_step, generator=gen)) / t_per_step
            xb, yb = train.x[idx], train.y[idx]
            loss = torch.stack([task.loss_fn(functional_call(model, task.layout.unflatten(w), (xb,)), yb)
                                for w in curve.points(t)]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item())
            if progress:
                progress((step + 1) / steps)
    return Curve(kind, curve.start, control.detach().clone(), curve.end, history)


def evaluate_along(evaluator, curve: Curve, n_points: int = 31) -> dict[str, np.ndarray]:
    """The real loss and accuracy at equally spaced points of a curve.

    Parameters
    ----------
    evaluator : BatchedEvaluator
        Its task's evaluation data and loss; with BatchNorm and ``bn="recompute"`` the statistics
        of each point are recomputed from its calibration batch.
    curve : Curve
    n_points : int
        T ≥ 2, the ends included.

    Returns
    -------
    dict
        ``t`` (T,) float64, ``loss`` (T,) float64, ``accuracy`` (T,) float64.
    """
    if n_points < 2:
        raise GlobscopeError(f"evaluate_along: n_points must be at least 2 (the ends), not {n_points}")
    D = evaluator.layout.n_params
    if curve.n_params != D:
        raise GlobscopeError(f"evaluate_along: a curve of D = {curve.n_params} does not fit task "
                             f"{evaluator.task.name!r} (D = {D})")
    t = np.linspace(0.0, 1.0, n_points)
    with torch.no_grad():
        W = curve.points(t)
    loss, accuracy = evaluator.evaluate(W)
    return {"t": t, "loss": loss, "accuracy": accuracy}


def barrier(t, loss) -> float:
    """The loss barrier of a loss profile along a path, as in Git Re-Basin (Ainsworth et al. 2023).

    ``max_t [loss(t) − ((1−t)·loss(0) + t·loss(1))]``: the largest rise of the loss above the
    straight interpolation of the two end losses. It is 0 or more (the term is 0 at t = 0), and 0
    for a path whose loss never exceeds that interpolation.

    Parameters
    ----------
    t : array-like of shape (T,)
        Increasing, from exactly 0 to exactly 1 (e.g. ``evaluate_along``'s ``t``).
    loss : array-like of shape (T,)
        The loss at each t. A NaN gives NaN, an infinite loss an infinite barrier.

    Returns
    -------
    float
    """
    t, loss = np.asarray(t, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or t.shape != loss.shape or len(t) < 2:
        raise GlobscopeError(f"barrier: t and loss must be two arrays of one shape (T,), T ≥ 2; "
                             f"got {t.shape} and {loss.shape}")
    if t[0] != 0 or t[-1] != 1 or not (np.diff(t) > 0).all():
        raise GlobscopeError("barrier: t must increase from 0 to 1, the ends included")
    return float(np.max(loss - ((1 - t) * loss[0] + t * loss[-1])))


__all__ = ["CURVES", "Curve", "line", "train_curve", "evaluate_along", "barrier"]
