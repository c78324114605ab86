"""``formulation="auto"``: time the applicable formulations on the first batch and keep the fastest
(measure, don't assume).

A candidate is a (formulation, CPU threads, data batch) triple. On the CPU each formulation is
also timed with one thread (small kernels on a shared 2-core machine stall waiting for the second
core) and with data batches of ``SMALL_DATA_BATCH`` examples (whose activations stay in cache).
On the CPU a screening round on a slice of the batch drops the clear losers first; the others run
on the whole batch, the close ones twice. The winner's numbers on the batch are returned with the
choice, so the first batch is not evaluated again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from globscope.landscape.evaluation.common import num_threads, synchronize

log = logging.getLogger(__name__)


class Candidate(NamedTuple):
    """What ``auto`` times: a formulation run with ``threads`` CPU threads, ``data_batch`` examples a pass."""

    formulation: str
    threads: int
    data_batch: int


@dataclass
class TuningResult:
    """The choice of ``AutoTuner.choose`` and how it was made.

    Attributes
    ----------
    choice : Candidate
        The fastest candidate.
    timings : dict of str to float
        Milliseconds per model of every candidate timed on the whole batch, by ``formulation@Nthr@n``.
    tuning : dict
        ``screen_models`` (models of the screening slice, None without screening), ``screened``
        (its milliseconds per model by candidate), ``dropped`` (the candidates it dropped),
        ``seconds`` (the whole tuning).
    loss, accuracy : Tensor of shape (B,)
        The chosen candidate's results on the batch.
    """

    choice: Candidate
    timings: dict
    tuning: dict
    loss: torch.Tensor
    accuracy: torch.Tensor


# run(formulation, W, buffers, codes, data_batch) -> (loss, accuracy): one batch with one formulation
Runner = Callable[[str, torch.Tensor, "dict | None", "torch.Tensor | None", int], tuple[torch.Tensor, torch.Tensor]]


def _key(c) -> str:
    return f"{c[0]}@{c[1]}thr@{c[2]}"


class AutoTuner:
    """Chooses the fastest candidate for a batch of models on ``device``.

    Parameters
    ----------
    device : torch.device
    """

    SMALL_DATA_BATCH = 128  # the smaller data batch timed on the CPU
    GROUPED_DATA_BATCHES = (32, 64, 128)  # on the CPU: G models × data batch ≈ GROUP_EXAMPLES, G = 16, 8, 4
    SCREEN_MODELS = 32  # models a screened candidate runs (past the per-call overhead, a fraction of a batch)
    SCREEN_KEEP = 2.0   # screened candidates slower per model than this × the fastest are dropped
    RETIME = 1.5        # full-batch times within this × the fastest are taken again (the better of two)
    # models a candidate is timed on at most: a few passes of the loop tell, and of the grouped
    # formulation on the CPU (its passes hold few models each there)
    TIMED_MODELS = {"loop": 4}
    TIMED_MODELS_CPU = {"grouped": 16}

    def __init__(self, device: torch.device):
        self.device = device

    def candidates(self, formulations: list[str], threads: int, data_batch: int, tune_data_batch: bool
                   ) -> list[Candidate]:
        """The candidates ``choose`` times.

        Parameters
        ----------
        formulations : list of str
            Those worth timing, in order of preference on ties; ``grouped`` comes first with its own
            data batches.
        threads : int
            The CPU thread count in effect (on the CPU one thread is timed too).
        data_batch : int
            The evaluator's data batch.
        tune_data_batch : bool
            Whether smaller data batches may be timed (no data batch was given).

        Returns
        -------
        list of Candidate
        """
        cpu = self.device.type == "cpu"
        thread_counts = [threads, 1] if cpu and threads > 1 else [threads]
        batches = [data_batch]
        if cpu and tune_data_batch and data_batch > 2 * self.SMALL_DATA_BATCH:
            batches.append(self.SMALL_DATA_BATCH)
        out = [Candidate(f, t, b) for f in formulations if f != "grouped" for t in thread_counts for b in batches]
        if "grouped" in formulations:
            gb = (sorted({min(b, data_batch) for b in self.GROUPED_DATA_BATCHES}) if cpu and tune_data_batch
                  else [data_batch])
            out = [Candidate("grouped", t, b) for t in thread_counts for b in gb] + out
        return out

    def measure(self, cand, run: Runner, W: torch.Tensor, buffers: dict | None, codes: torch.Tensor | None,
                n: int, warm: bool) -> tuple[float, tuple[torch.Tensor, torch.Tensor], int]:
        """Seconds per model of candidate ``cand`` on the first ``n`` models of the batch (fewer for
        ``TIMED_MODELS``), after a one-model warm-up when ``warm``.

        Returns
        -------
        seconds : float
            Per model.
        out : (loss, accuracy)
            Its results on those models.
        n : int
            The models it ran.
        """
        form, nthreads, data_batch = cand
        n = min(n, self.TIMED_MODELS.get(form, n))
        if self.device.type == "cpu":
            n = min(n, self.TIMED_MODELS_CPU.get(form, n))
        n = min(n, len(W))
        with num_threads(nthreads):
            b = {k: v[:n] for k, v in buffers.items()} if buffers else None
            c = None if codes is None else codes[:n]
            if warm:
                run(form, W[:1], {k: v[:1] for k, v in b.items()} if b else None, None if c is None else c[:1],
                    data_batch)
            synchronize(self.device)
            t0 = time.perf_counter()
            out = run(form, W[:n], b, c, data_batch)
            synchronize(self.device)
            return (time.perf_counter() - t0) / n, out, n

    def choose(self, candidates: list, run: Runner, W: torch.Tensor | None, buffers: dict | None,
               codes: torch.Tensor | None = None, decode: Callable | None = None) -> TuningResult:
        """Time ``candidates`` on a batch and keep the fastest; with its results on the batch.

        Parameters
        ----------
        candidates : list of Candidate
        run : callable (formulation, W, buffers, codes, data_batch) -> (loss, accuracy)
            Evaluates a batch with one formulation (with the thread count in effect).
        W : Tensor of shape (B, D), optional
            The batch's weights; None with ``codes``: ``decode(codes)`` gives them.
        buffers : dict of str to Tensor of shape (B, ...), optional
        codes : Tensor of shape (B, K), optional
            The batch as codes of an affine head (read by the factored formulation).
        decode : callable (B, K) -> (B, D), optional

        Returns
        -------
        TuningResult

        Notes
        -----
        On the CPU, when the batch holds more than ``SCREEN_MODELS`` models, each candidate first
        runs once on that many (after a one-model warm-up), and those more than ``SCREEN_KEEP``
        times slower per model than the fastest are dropped: a slice is cheap but not the batch
        (the factored formulation gains ~1.7× per model from 32 to 246 models, the stacked one
        loses ~2× once its activations leave the cache), so it only screens. The others run on the
        whole batch (fewer models for ``TIMED_MODELS``), those within ``RETIME`` of the fastest
        twice (the better of two: a shared machine's stalls are not the method's); on a GPU every
        one twice. With ``codes`` the factored candidate's time includes decoding its later layers'
        weights; the others get the full weights decoded beforehand.
        """
        t_start = time.perf_counter()
        if W is None:
            W = decode(codes)
        cands = list(candidates)
        cpu = self.device.type == "cpu"
        screen = {}
        if cpu and len(cands) > 1 and len(W) > self.SCREEN_MODELS:
            for cand in cands:
                screen[cand] = self.measure(cand, run, W, buffers, codes, self.SCREEN_MODELS, warm=True)[0]
            fastest = min(screen.values())
            cands = sorted((c for c in cands if screen[c] <= self.SCREEN_KEEP * fastest), key=screen.get)
        per_model, results = {}, {}
        for cand in cands:
            t, out, n = self.measure(cand, run, W, buffers, codes, len(W), warm=cand not in screen)
            per_model[cand] = t
            if n == len(W):
                results[cand] = out
        fastest = min(per_model.values())
        for cand in cands:
            if not cpu or per_model[cand] <= self.RETIME * fastest:
                t, out, n = self.measure(cand, run, W, buffers, codes, len(W), warm=False)
                per_model[cand] = min(per_model[cand], t)
        best = Candidate(*min(per_model, key=per_model.get))
        timings = {_key(c): round(1e3 * v, 4) for c, v in per_model.items()}
        tuning = {"screen_models": self.SCREEN_MODELS if screen else None,
                  "screened": {_key(c): round(1e3 * v, 4) for c, v in screen.items()},
                  "dropped": [_key(c) for c in screen if c not in per_model]}
        log.info("formulation (ms/model): %s -> %s, %d thread(s), data batch %d", timings, *best)
        if best in results:
            loss, acc = results[best]
        else:  # timed on fewer models than the batch: the whole batch once more
            with num_threads(best.threads):
                loss, acc = run(best.formulation, W, buffers, codes, best.data_batch)
        tuning["seconds"] = round(time.perf_counter() - t_start, 3)
        return TuningResult(best, timings, tuning, loss, acc)


__all__ = ["AutoTuner", "Candidate", "TuningResult"]
