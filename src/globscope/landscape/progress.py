"""Progress as log lines, for runs without a terminal (batch jobs, torchrun's logs), where a
progress bar would print nothing or garbage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from globscope.landscape.limits import duration
from globscope.settings import PROGRESS_LOG_SECONDS

log = logging.getLogger(__name__)


class LogProgress:
    """A ``progress(fraction)`` callback that logs (INFO, this module's logger) where a job stands:
    at the first call, every ``interval`` seconds, and when it is done.

    Parameters
    ----------
    desc : str
        What the job is (the lines start with it).
    total : int
        Items of the whole job (grid points); the fraction counts them.
    interval : float
        Seconds between lines (default ``PROGRESS_LOG_SECONDS``).
    unit : str
    clock : callable () -> float
        Seconds (``time.monotonic``).

    Notes
    -----
    Items found done at the first call (chunks of an earlier attempt) count as the start, so the
    rate and the time left are those of the work done now.
    """

    def __init__(self, desc: str, total: int, interval: float = PROGRESS_LOG_SECONDS, unit: str = "points",
                 clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.interval, self.unit, self.clock = desc, int(total), float(interval), unit, clock
        self.start: tuple[float, int] | None = None
        self.last = 0.0
        self.finished = False

    def __call__(self, fraction: float) -> None:
        now, n = self.clock(), min(self.total, int(round(fraction * self.total)))
        if self.start is None:
            self.start, self.last = (now, n), now
            log.info("%s: started, %s of %s %s done already", self.desc, f"{n:,}", f"{self.total:,}", self.unit)
            return
        if self.finished:
            return
        t0, n0 = self.start
        rate = (n - n0) / max(now - t0, 1e-9)
        if fraction >= 1:
            self.finished = True
            log.info("%s: done, %s %s in %s (%.0f %s/s)", self.desc, f"{n - n0:,}", self.unit,
                     duration(now - t0), rate, self.unit)
        elif now - self.last >= self.interval:
            self.last = now
            left = f", about {duration((self.total - n) / rate)} left" if rate > 0 else ""
            log.info("%s: %.1f%% (%s of %s %s), %.0f %s/s%s", self.desc, 100 * n / max(self.total, 1), f"{n:,}",
                     f"{self.total:,}", self.unit, rate, self.unit, left)


__all__ = ["LogProgress"]
