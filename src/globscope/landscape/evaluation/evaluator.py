"""``BatchedEvaluator``: the facade over the formulations, the tuner and the memory budget."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from globscope.errors import Aborted, GlobscopeError
from globscope.landscape.batchnorm import StatisticsProbe, batchnorm_modules, check_bn_mode
from globscope.landscape.evaluation.base import Formulation
from globscope.landscape.evaluation.common import (
    MAX_BATCH_MODELS,
    EvalSetup,
    activation_numel,
    bn_statistics,
    memory_budget,
    models_per_batch,
    num_threads,
    resolve_device,
)
from globscope.landscape.evaluation.factored import AffineHead, Factored
from globscope.landscape.evaluation.grouped import Grouped, groupable
from globscope.landscape.evaluation.loop import Loop
from globscope.landscape.evaluation.stacked import Stacked, stackable
from globscope.landscape.evaluation.tuner import AutoTuner, Candidate
from globscope.landscape.evaluation.vmap import Vmap
from globscope.names import FORMULATIONS
from globscope.settings import LandscapeSettings
from globscope.tasks import Task

# the strategies by name; ``auto`` times those that apply
STRATEGIES: dict[str, type[Formulation]] = {f.name: f for f in (Stacked, Vmap, Loop, Factored, Grouped)}
# the choices every face offers are named in globscope.names; each names a strategy here
assert set(FORMULATIONS) == {"auto", *STRATEGIES}, "globscope.names.FORMULATIONS and the strategies disagree"
# ``auto``'s order of preference on equal times (grouped comes first with its own data batches)
TUNING_ORDER = ("grouped", "factored", "stacked", "vmap", "loop")

_default_budget = memory_budget  # the constructor's ``memory_budget`` argument shadows the function


class BatchedEvaluator:
    """Loss and accuracy of batches of weight vectors of one task.

    Parameters
    ----------
    task : Task
        Model factory, evaluation data, loss (a mean over examples).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    bn : {"recompute", "reference"}, optional
        BatchNorm statistics (see ``globscope.landscape.batchnorm``); ignored without BatchNorm.
        Default ``recompute``.
    calibration_size : int
        Training examples in the fixed calibration batch (the first ones) for ``recompute``.
    formulation : {"auto", "stacked", "vmap", "loop", "factored", "grouped"}
        See ``globscope.landscape.evaluation``. ``auto`` times the applicable ones on the first batch.
    memory_budget : int, optional
        Bytes one batch may use (default: ``memory_budget(device)``).
    max_batch_models : int, optional
        Most models per batch (default 256 on the CPU, 4096 on a GPU).
    data_batch : int, optional
        Evaluation examples per forward pass (default: all, unless the budget forbids).
    threads : int, optional
        CPU threads while evaluating (restored afterwards); default: torch's setting, or what
        ``auto`` measured to be faster.
    tune_formulations : sequence of str, optional
        With ``auto``: the formulations it may choose from, timed even where they would not save
        work (e.g. ``("factored",)`` to measure its threads and data batch only); each must apply
        to the task. Default: every one that applies and may be the fastest.

    Attributes
    ----------
    formulation, threads, data_batch, batch_models
        The settings in effect (``choice``); ``auto`` until the first batch is timed.
    timings : dict
        ``auto``'s milliseconds per model by candidate; ``tuning`` how it chose (``AutoTuner``).
    stackable, factorable, groupable : bool
        Whether the stacked, factored and grouped formulations apply to the task's architecture.
    first_linear : str or None
        The name of the MLP's first Linear layer on the data (the factored formulation's).
    budget : int
        The memory budget, bytes.
    buffer_keys : list of str
        The model's floating-point buffers (BatchNorm running statistics).
    act_per_example : int
        Activation elements of one model per example (for the budget).
    tuner : AutoTuner
        ``auto``'s timing (tests may replace its ``measure``).
    """

    def __init__(self, task: Task, device=None, bn: str | None = None,
                 calibration_size: int = LandscapeSettings.calibration_size,
                 formulation: str = "auto", memory_budget: int | None = None,
                 max_batch_models: int | None = None, data_batch: int | None = None,
                 threads: int | None = None, tune_formulations: Sequence[str] | None = None):
        if formulation not in FORMULATIONS:
            raise GlobscopeError(f"formulation must be one of {FORMULATIONS}, not {formulation!r}")
        self.task = task
        self.device = resolve_device(device)
        self.layout = task.layout
        self.model = task.make_model().to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # each task.has_batchnorm builds a model, drawing from torch's generator: asked exactly where the
        # callers' random streams have always seen it asked (here, and below unless not stackable)
        self.bn = check_bn_mode(bn, task.has_batchnorm)
        has_bn = self.bn is not None
        self.formulation = formulation
        self.threads = threads
        self._in_session = 0
        self.stackable = stackable(self.model) and not task.has_batchnorm
        if formulation != "auto":
            STRATEGIES[formulation].check(task.name, self.model, has_bn)
        self.tune_formulations = self._check_tune_formulations(tune_formulations, formulation, has_bn)
        self.groupable = groupable(self.model)
        ev = task.eval_data
        if len(ev) == 0:
            raise GlobscopeError(f"task {task.name!r}: empty evaluation data")
        self.x = ev.x.to(self.device)
        self.y = ev.y.to(self.device)
        self.n_eval = len(ev)
        self.buffer_keys = [k for k, v in self.model.named_buffers() if v.is_floating_point()]
        self.calibration_size = calibration_size
        self.probe = None
        calib_x = None
        if self.bn == "recompute":
            n = min(calibration_size, len(task.train_data))
            if n < 2:
                raise GlobscopeError(f"task {task.name!r}: BatchNorm recompute needs at least 2 training examples")
            calib_x = task.train_data.x[:n].to(self.device)
            self.probe = StatisticsProbe(self.model)
        self.setup = EvalSetup(task=task, device=self.device, model=self.model, x=self.x, y=self.y, bn=self.bn,
                               calib_x=calib_x, probe=self.probe, n_bn=len(batchnorm_modules(self.model)))
        self.strategies: dict[str, Formulation] = {name: cls(self.setup) for name, cls in STRATEGIES.items()}
        self._factored: Factored = self.strategies["factored"]
        self.tuner = AutoTuner(self.device)
        # memory: activations of one model per example, and the parameter copies
        self.act_per_example = activation_numel(self.model, self.x[:2])
        self.budget = int(memory_budget or _default_budget(self.device))
        # all layer outputs of an example at once: more than is ever alive under no_grad
        per_example_bytes = 4 * self.act_per_example
        self.tune_data_batch = data_batch is None
        self.data_batch = int(data_batch or self.n_eval)
        if self.data_batch * per_example_bytes > self.budget:
            self.data_batch = max(1, self.budget // per_example_bytes)
        self.data_batch = min(self.data_batch, self.n_eval)
        n_cal = len(calib_x) if calib_x is not None else 0
        per_model = per_example_bytes * max(self.data_batch, n_cal) + 4 * 4 * self.layout.n_params
        cap = max_batch_models or MAX_BATCH_MODELS.get(self.device.type, 256)
        self.batch_models = models_per_batch(self.budget, per_model, cap)
        self.pinned: dict | None = None  # the settings ``pin`` fixed
        self.timings: dict[str, float] = {}
        self.tuning: dict | None = None  # how ``auto`` chose (screened slice, dropped candidates, seconds)

    def _check_tune_formulations(self, names, formulation: str, has_bn: bool) -> tuple[str, ...] | None:
        if names is None:
            return None
        if formulation != "auto":
            raise GlobscopeError(f"tune_formulations needs formulation='auto', not {formulation!r}")
        names = tuple(names)
        if not names:
            raise GlobscopeError("tune_formulations: no formulation given")
        for name in names:
            if name not in STRATEGIES:
                raise GlobscopeError(f"tune_formulations: {name!r} is none of {tuple(STRATEGIES)}")
            STRATEGIES[name].check(self.task.name, self.model, has_bn)
        return names

    @property
    def calib_x(self) -> torch.Tensor | None:
        """The calibration batch (``bn="recompute"``), else None."""
        return self.setup.calib_x

    # -- the factored formulation's affine head ---------------------------------------------------
    @property
    def affine_head(self) -> AffineHead | None:
        """The affine head ``set_affine_head`` prepared (``K``, ``nbytes`` of P, ``n_rest``), or None."""
        return self._factored.head

    @property
    def head(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(A, b)`` of the affine head in use, or None."""
        hd = self._factored.head
        return None if hd is None else (hd.A, hd.b)

    def head_bytes(self, K: int) -> int:
        """Bytes of the precomputed first-layer products for codes of K entries: (K+1) × width × n_eval floats."""
        return self._factored.head_bytes(K)

    def set_affine_head(self, A: torch.Tensor, b: torch.Tensor) -> bool:
        """Enable the factored formulation for models ``w = c @ A + b`` (a manifold's ``affine_head``).

        Precomputes ``P = [x @ A1_kᵀ + a1_k]_k`` and ``x @ B1ᵀ + b1`` for the first layer: (K+1) × width
        × n_eval floats (``head_bytes``), allowed up to ``HEAD_BUDGET_FRACTION`` of the budget (twice
        that while ``auto`` tries a smaller data batch). The batch size shrinks by what P takes,
        unless ``pin`` fixed it.

        Parameters
        ----------
        A : Tensor of shape (K, D)
        b : Tensor of shape (D,)

        Returns
        -------
        bool
            Whether the factored formulation is available (False: not an MLP with a first Linear
            layer on the data, or P too large for the budget).
        """
        head = self._factored.set_head(A, b, self.budget)
        if head is None:
            return False
        if self.pinned is None:  # pinned: the stored run's batch size (its head took the same memory)
            per_model = 4 * self.act_per_example * self.data_batch + 4 * 4 * self.layout.n_params
            self.batch_models = models_per_batch(self.budget - 2 * head.nbytes, per_model, self.batch_models)
        return True

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Full weight vectors (B, D) of codes (B, K): ``codes @ A + b``."""
        if self._factored.head is None:
            raise GlobscopeError("decode_codes: no affine head set (set_affine_head)")
        return self._factored.head.decode(codes)

    # -- batches -------------------------------------------------------------------------------
    @torch.no_grad()
    def statistics(self, W: torch.Tensor, formulation: str = "vmap") -> dict[str, torch.Tensor]:
        """Recomputed BatchNorm statistics of the models ``W`` (B, D): buffers (B, C) by name
        (one model at a time for ``formulation="loop"``, else under ``vmap``)."""
        return bn_statistics(self.setup, W, per_model=formulation == "loop")

    @torch.no_grad()
    def _run(self, formulation: str, W: torch.Tensor | None, buffers: dict | None, codes: torch.Tensor | None,
             data_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch with one formulation (``AutoTuner``'s runner): loss and accuracy (B,)."""
        strategy = self.strategies[formulation]
        if W is None and not strategy.reads_codes:
            W = self.decode_codes(codes)
        return strategy.run(W, buffers, data_batch, codes)

    def candidates(self, codes: bool = False) -> list[Candidate]:
        """(formulation, threads, data batch) triples ``auto`` measures (``AutoTuner.candidates``).

        On the CPU also one thread, and data batches of 128 examples (whose activations stay in
        cache); the grouped formulation with its own data batches (``AutoTuner.candidates``).
        ``factored`` when the models come as codes of an affine head with fewer entries than the
        first layer's inputs (else it does more work, never less); any of ``tune_formulations``
        when given."""
        if self.tune_formulations is not None:
            forms = [f for f in TUNING_ORDER if f in self.tune_formulations]
        else:
            forms = [f for f in TUNING_ORDER if self.strategies[f].worth_timing(codes)]
        return self.tuner.candidates(forms, self.threads or torch.get_num_threads(), self.data_batch,
                                     self.tune_data_batch)

    def _choose(self, W, buffers, codes=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Time the candidates on the first batch (``AutoTuner.choose``), keep the fastest; the batch's results."""
        r = self.tuner.choose(self.candidates(codes is not None), self._run, W, buffers, codes, self.decode_codes)
        self.formulation, self.threads, self.data_batch = r.choice
        self.timings, self.tuning = r.timings, r.tuning
        return r.loss, r.accuracy

    def evaluate(self, W=None, buffers: dict | None = None, progress=None, should_abort=None,
                 codes=None) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy of each model over the evaluation data.

        Parameters
        ----------
        W : array or Tensor of shape (B, D)
            Weight vectors in the task's layout order. Any B; split into batches of at most
            ``batch_models``. Omitted when ``codes`` are given.
        buffers : dict of str to Tensor of shape (B, ...), optional
            Per-model buffers (BatchNorm running statistics) for ``bn="reference"``.
        progress : callable(float), optional
            Called with the fraction of models done after each batch.
        should_abort : callable() -> bool, optional
            Polled before each batch; True raises ``globscope.errors.Aborted``.
        codes : array or Tensor of shape (B, K), optional
            Instead of ``W``: codes of the affine head given to ``set_affine_head``, the models
            being ``codes @ A + b`` (the factored formulation uses them directly).

        Returns
        -------
        loss : ndarray of shape (B,), float64
            Non-finite losses (NaN, ±inf) are returned as they are.
        accuracy : ndarray of shape (B,), float64
        """
        if codes is not None:
            head = self.affine_head
            if head is None:
                raise GlobscopeError("evaluate(codes=...): no affine head set (set_affine_head)")
            codes = torch.as_tensor(codes).to(self.device, torch.float32)
            if codes.ndim != 2 or codes.shape[1] != head.K:
                raise GlobscopeError(f"codes of shape {tuple(codes.shape)} do not fit the affine head "
                                     f"(K = {head.K})")
            W = None
        else:
            W = torch.as_tensor(W)
            if W.ndim != 2 or W.shape[1] != self.layout.n_params:
                raise GlobscopeError(f"weights of shape {tuple(W.shape)} do not fit task {self.task.name!r} "
                                     f"(D = {self.layout.n_params})")
            W = W.to(self.device, torch.float32)
        with contextlib.nullcontext() if self._in_session else self.session():
            return self._evaluate(W, buffers, progress, should_abort, codes)

    @contextlib.contextmanager
    def session(self):
        """A block of evaluations (a whole field) run with the evaluator's thread count; torch's
        setting is restored on exit. ``evaluate`` outside a session opens one per call."""
        self._in_session += 1
        try:
            with num_threads(self.threads):
                yield self
        finally:
            self._in_session -= 1

    @property
    def first_linear(self) -> str | None:
        """The name of the MLP's first Linear layer on the data (the factored formulation's), or None."""
        return self._factored.first_linear

    @property
    def factorable(self) -> bool:
        """Whether the factored formulation can run for this task (given an affine head)."""
        return self.first_linear is not None

    def _evaluate(self, W, buffers, progress=None, should_abort=None, codes=None):
        losses, accs = [], []
        n = len(W) if W is not None else len(codes)
        for s in range(0, n, self.batch_models):
            if should_abort and should_abort():
                raise Aborted(f"evaluation aborted after {s} of {n} models")
            Wb = W[s:s + self.batch_models] if W is not None else None
            cb = codes[s:s + self.batch_models] if codes is not None else None
            bb = {k: v[s:s + self.batch_models] for k, v in buffers.items()} if buffers else None
            if self.formulation == "auto":
                loss, acc = self._choose(Wb, bb, cb)
                torch.set_num_threads(self.threads)  # the chosen count, for the rest of the session
            else:
                loss, acc = self._run(self.formulation, Wb, bb, cb, self.data_batch)
            losses.append(loss.double().cpu())
            accs.append(acc.double().cpu())
            if progress:
                progress(min(s + self.batch_models, n) / n)
        return torch.cat(losses).numpy(), torch.cat(accs).numpy()

    # -- settings and provenance -------------------------------------------------------------------
    def flops_per_model(self) -> int:
        """Floating-point operations of one model's forward pass over the evaluation data
        (``torch.utils.flop_counter``: matrix products and convolutions)."""
        from torch.utils.flop_counter import FlopCounterMode

        n = min(self.n_eval, 256)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            self.model(self.x[:n])
        return int(round(fc.get_total_flops() * self.n_eval / n))

    def choice(self) -> dict:
        """The settings that fix the numbers' bits: formulation, CPU threads, data batch, models
        per batch (what ``auto`` chose, or was given). Call it inside ``session`` (the thread
        count in effect) after the first ``evaluate``; ``pin`` restores it."""
        return {"formulation": self.formulation, "threads": int(self.threads or torch.get_num_threads()),
                "data_batch": int(self.data_batch), "batch_models": int(self.batch_models)}

    def pin(self, formulation: str, threads: int | None, data_batch: int, batch_models: int) -> None:
        """Fix the settings ``choice`` returned (e.g. the first attempt's at a resume): no timing, the
        same formulation, thread count, data batch and models per batch, hence the same bits. A later
        ``set_affine_head`` keeps these models per batch."""
        if formulation not in FORMULATIONS or formulation == "auto":
            raise GlobscopeError(f"cannot pin formulation {formulation!r}")
        if not STRATEGIES[formulation].applies(self.model, self.bn is not None):
            raise GlobscopeError(f"task {self.task.name!r}: the stored formulation {formulation!r} does not apply")
        self.formulation = formulation
        self.threads = int(threads) if threads else None
        self.data_batch = int(min(max(1, data_batch), self.n_eval))
        self.tune_data_batch = False
        self.batch_models = int(max(1, batch_models))
        self.pinned = {"formulation": formulation, "threads": self.threads, "data_batch": self.data_batch,
                       "batch_models": self.batch_models}

    def data_fingerprint(self) -> str:
        """A hash of the data the numbers depend on: the evaluation inputs and targets, and the
        calibration batch when BatchNorm statistics are recomputed (dtype, shape and bytes of each)."""
        h = hashlib.sha256()
        tensors = [self.x, self.y] + ([self.calib_x] if self.probe is not None else [])
        for t in tensors:
            a = t.detach().cpu().contiguous()
            h.update(f"{a.dtype}{tuple(a.shape)}".encode())
            h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """The settings in effect (for landscape.json)."""
        head = self.affine_head
        return {"device": str(self.device), "formulation": self.formulation, "threads": self.threads,
                "batch_models": self.batch_models,
                "data_batch": self.data_batch, "memory_budget_bytes": self.budget, "bn": self.bn,
                "calibration_size": len(self.calib_x) if self.probe is not None else None,
                "n_eval": self.n_eval, "formulation_timings": self.timings,
                "formulation_tuning": self.tuning,
                "affine_head": {"K": head.K, "precomputed_bytes": head.nbytes} if head is not None else None}


__all__ = ["BatchedEvaluator", "FORMULATIONS", "STRATEGIES"]
