"""The size of a landscape job, known before it starts: grid points, memory, disk and, when an
earlier run in the same output folder measured the speed, time.

:func:`estimate` needs only the settings, the latent dimension and the output folder, so the
landscape stage checks a job before any set-up (reading checkpoints, building the evaluator). A job
that cannot fit this machine (its field needs more memory than is available, its chunk store and
outputs more disk than is free) is refused; one beyond the ``HUGE_*`` limits of
:mod:`globscope.settings` runs only with ``LandscapeSettings.allow_huge`` (``--allow-huge``).
Both refusals say the numbers. No torch here: the check costs milliseconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from globscope.errors import GlobscopeError
from globscope.fileio import read_json
from globscope.landscape.store import CACHE_DIR, n_chunks, stored_chunks
from globscope.settings import HUGE_FRACTION, HUGE_POINTS, HUGE_SECONDS, LandscapeSettings

# Host memory per grid point at rank 0's peak: the assembled fields (four float64 arrays) and, for
# d <= 3, landscape.vti's inline base64 text, which the writer holds as bytes, compressed blocks
# and text several times over; d = 4 writes the .npz from the arrays and its .vti slices one at a
# time. Measured with tracemalloc on a million random losses: 130 and 41 bytes; a quarter more
# here for the allocator.
MEMORY_PER_POINT = {2: 160, 3: 160, 4: 52}
# A chunk file holds three float64 arrays; its zip and .npy headers and the file system's block
# rounding add about this much per file (measured: a 1024-point chunk takes 28.7 KB of disk).
STORE_BYTES_PER_POINT = 24
CHUNK_FILE_OVERHEAD = 4150
# Outputs: landscape.vti holds four float64 arrays, zlib-compressed (random losses do not shrink)
# and in base64 (4/3); d = 4 writes landscape.npz (uncompressed) and the slices' .vti files.
VTI_BYTES_PER_POINT = 43
NPZ_BYTES_PER_POINT = 32


def available_memory() -> int | None:
    """Bytes of memory this process may still take: the kernel's ``MemAvailable``, lowered to what
    the process's cgroup allows (a container's limit); None where neither can be read."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    limit = _cgroup_available()
    if limit is not None:
        avail = limit if avail is None else min(avail, limit)
    return avail


# cgroup v2 and v1: (limit, usage, the folder's memory.stat entry of reclaimable page cache)
_CGROUPS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "inactive_file"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "total_inactive_file"))


def _cgroup_available() -> int | None:
    for limit_file, usage_file, cache_key in _CGROUPS:
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= 1 << 60:  # no limit
            return None
        cache = 0
        try:
            for line in (Path(limit_file).parent / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == cache_key:
                    cache = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(limit_text) - usage + cache)
    return None


def free_disk(path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or would: its nearest existing folder)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def stored_points(out, n_points: int, chunk_points: int) -> int:
    """Grid points already in a chunk store under ``out`` for a grid of ``n_points`` cut into
    ``chunk_points`` (the most any one store holds): a resumed run needs no disk for them."""
    best = 0
    cache = Path(out) / CACHE_DIR
    if not cache.is_dir():
        return 0
    for folder in cache.iterdir():
        info = read_json(folder / "store.json")
        if info and info.get("n_points") == n_points and info.get("chunk_points") == chunk_points:
            best = max(best, min(n_points, len(stored_chunks(folder)) * chunk_points))
    return best


def recorded_rate(out, task_name: str | None) -> float | None:
    """Points per second an earlier run of ``task_name`` in ``out`` measured (its
    ``landscape.json``), or None."""
    record = read_json(Path(out) / "landscape.json")
    if not isinstance(record, dict) or task_name is None or record.get("task") != task_name:
        return None
    rate = record.get("points_per_second")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


@dataclass(frozen=True)
class JobEstimate:
    """What a landscape job takes, and what this machine has.

    Attributes
    ----------
    shape : tuple of int
        Grid vertices per axis.
    n_points : int
    memory : int
        Bytes of host memory at the peak (rank 0 assembling and writing the field).
    disk : int
        Bytes the chunk store and the outputs still need (chunks already stored excluded).
    stored_points : int
        Grid points an earlier attempt left in the chunk store.
    available_memory, free_disk : int or None
        This machine's, None where they cannot be read (then they are not checked).
    seconds : float or None
        The time at the speed an earlier run in the output folder measured; None without one.
    out : Path
    """

    shape: tuple
    n_points: int
    memory: int
    disk: int
    stored_points: int
    available_memory: int | None
    free_disk: int | None
    seconds: float | None
    out: Path

    def describe(self) -> str:
        """The estimate in words: points, memory, disk, time."""
        shape = "×".join(map(str, self.shape))
        mem = f"~{size(self.memory)} of memory" + (f" ({size(self.available_memory)} available)"
                                                     if self.available_memory is not None else "")
        disk = f"~{size(self.disk)} of disk for the chunk store and outputs" + (
            f" ({size(self.free_disk)} free at {self.out})" if self.free_disk is not None else "")
        when = f", ~{duration(self.seconds)} at the speed measured before" if self.seconds is not None else ""
        return f"{shape} = {self.n_points:,} grid points need {mem} and {disk}{when}"

    def ordinary_resolution(self) -> int:
        """Vertices per axis of the largest cubic grid that is not huge here (within ``HUGE_POINTS``,
        ``HUGE_FRACTION`` of the available memory and free disk, and ``HUGE_SECONDS`` at the
        measured speed); 0 when even 2 per axis is."""
        todo = max(1, self.n_points - self.stored_points)
        n = float(HUGE_POINTS)
        for need, have in ((self.memory / self.n_points, self.available_memory), (self.disk / todo, self.free_disk)):
            if have is not None:
                n = min(n, HUGE_FRACTION * have / need)
        if self.seconds:
            n = min(n, HUGE_SECONDS * todo / self.seconds)
        r = int(n ** (1 / len(self.shape)))
        return r if r >= 2 else 0

    def check(self, allow_huge: bool = False) -> None:
        """Refuse a job that cannot fit this machine, and a huge one unless ``allow_huge``.

        Raises
        ------
        GlobscopeError
            One line with the estimate, what does not fit or is huge, and what to do.
        """
        short = []
        if self.available_memory is not None and self.memory > self.available_memory:
            short.append("memory")
        if self.free_disk is not None and self.disk > self.free_disk:
            short.append("disk")
        if short:
            r = self.ordinary_resolution()
            fix = f"; lower --resolution (about {r} per axis runs without --allow-huge)" if r else ""
            raise GlobscopeError(f"landscape too large for this machine ({' and '.join(short)}): "
                                 f"{self.describe()}{fix}")
        huge = []
        if self.n_points > HUGE_POINTS:
            huge.append(f"more than {HUGE_POINTS:,} points")
        if self.available_memory is not None and self.memory > HUGE_FRACTION * self.available_memory:
            huge.append(f"over {HUGE_FRACTION:.0%} of the available memory")
        if self.free_disk is not None and self.disk > HUGE_FRACTION * self.free_disk:
            huge.append(f"over {HUGE_FRACTION:.0%} of the free disk")
        if self.seconds is not None and self.seconds > HUGE_SECONDS:
            huge.append(f"over {duration(HUGE_SECONDS)}")
        if huge and not allow_huge:
            r = self.ordinary_resolution()
            lower = f" (about {r} per axis is not huge)" if r else ""
            raise GlobscopeError(f"huge landscape ({', '.join(huge)}): {self.describe()}; run it with --allow-huge "
                                 f"(allow_huge=True) if that is meant, or lower --resolution{lower}")


def estimate(settings: LandscapeSettings, dim: int, out, task_name: str | None = None) -> JobEstimate:
    """What the landscape job of ``settings`` on a ``dim``-D manifold takes, written to ``out``.

    Parameters
    ----------
    settings : LandscapeSettings
        Its resolution and chunk size count.
    dim : int
        The manifold's latent dimension.
    out : path
        The output folder: its free disk, the chunks an earlier attempt stored there, and the speed
        an earlier run of ``task_name`` there measured (``landscape.json``).
    task_name : str, optional

    Returns
    -------
    JobEstimate
    """
    n = settings.n_points(dim)  # Python integers: exact however large
    res = settings.resolution
    shape = tuple(res) if isinstance(res, tuple) else (res,) * dim
    stored = stored_points(out, n, settings.chunk_points)
    todo = n - stored
    outputs = n * (VTI_BYTES_PER_POINT + (NPZ_BYTES_PER_POINT if dim == 4 else 0))
    disk = todo * STORE_BYTES_PER_POINT + n_chunks(todo, settings.chunk_points) * CHUNK_FILE_OVERHEAD + outputs
    rate = recorded_rate(out, task_name)
    return JobEstimate(shape=shape, n_points=n, memory=n * MEMORY_PER_POINT[dim], disk=disk, stored_points=stored,
                       available_memory=available_memory(), free_disk=free_disk(out),
                       seconds=todo / rate if rate else None, out=Path(out))


def size(n: float) -> str:
    """Bytes in words: ``2.3 TB``."""
    units = ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.3g} {units[i]}"


def duration(seconds: float) -> str:
    """Seconds in words: ``45 s``, ``12 min``, ``926 h``, ``41.2 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.3g} days"


__all__ = ["JobEstimate", "estimate", "available_memory", "free_disk", "stored_points", "recorded_rate",
           "size", "duration", "MEMORY_PER_POINT"]
