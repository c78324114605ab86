"""The settings of each pipeline stage, with their defaults defined once.

Every face takes its defaults from here: the CLI's options, the demo, the ParaView proxies'
``default_values`` and the states. A stage records the settings it ran with (``topology.json``,
``landscape.json``, the bundle's ``manifest.json``), and later readers (the state, the render) take
them from there, so the picture, the state and ``summary.json`` agree by construction.

Settings are frozen dataclasses; ``replace(**changes)`` makes a changed copy (``None`` values are
ignored, so a CLI option left unset keeps the default) and checks the result.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from globscope.errors import GlobscopeError
from globscope.names import BN_MODES, FORMULATIONS, LATENT_DIMS, LOG_LOSS, MANIFOLD_METHODS

# vertices per axis of the latent grid where nobody asks for another number (the demo's 128²
# digits field takes about half a second on 2 CPU cores)
DEFAULT_RESOLUTION = 128

# a landscape beyond any of these is "huge": it runs only with ``LandscapeSettings.allow_huge``
# (``--allow-huge``); one that cannot fit this machine's memory or disk never runs
# (``globscope.landscape.limits``). 10**8 points take about an hour at the CPU's ~30 000 points/s
# on digits-mlp, and their field needs about as much memory as a workstation has.
HUGE_POINTS = 10 ** 8
HUGE_FRACTION = 0.5  # of the available memory, or of the free disk at the output folder
HUGE_SECONDS = 12 * 3600  # estimated time, when an earlier run in the output folder measured the speed
# without a terminal the landscape command logs its progress at this interval (seconds)
PROGRESS_LOG_SECONDS = 60.0


class _Settings:
    """Shared behaviour of the settings dataclasses."""

    def __post_init__(self):
        self.check()

    def check(self) -> None:  # pragma: no cover - each settings class checks its own fields
        pass

    def replace(self, **changes):
        """A copy with ``changes`` applied; ``None`` values leave a setting as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None):
        """Settings recorded by ``to_dict`` (unknown keys, e.g. from a newer version, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in (d or {}).items() if k in names})


def _positive_int(what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise GlobscopeError(f"{what} must be a positive integer, got {v!r}")


def _positive_or_none(**values) -> None:
    """Settings that are a positive integer, or None for "the default of what runs them"."""
    for what, v in values.items():
        if v is not None:
            _positive_int(what, v)


@dataclass(frozen=True)
class ZooSettings(_Settings):
    """A model zoo: ``n_variants`` variants (A, B, …) of ``task``, a checkpoint every few epochs."""

    task: str = "digits-mlp"
    n_variants: int = 7
    epochs: int | None = None  # None: the task's
    checkpoint_every: int | None = None  # None: the task's
    seed: int = 0

    MAX_VARIANTS = 26  # named A..Z

    def check(self):
        _positive_int("the number of variants", self.n_variants)
        if self.n_variants > self.MAX_VARIANTS:
            raise GlobscopeError(f"at most {self.MAX_VARIANTS} variants (named A..Z), got {self.n_variants}")
        _positive_or_none(epochs=self.epochs, checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class FitSettings(_Settings):
    """A manifold fit: the method, the latent dimension, the seed (fits are deterministic)."""

    method: str = "autoencoder"
    dim: int = 2
    seed: int = 0
    epochs: int | None = None  # autoencoder: most training epochs (None: the method's default)
    device: str = "auto"  # autoencoder: where it trains

    def check(self):
        object.__setattr__(self, "method", MANIFOLD_METHODS.name(self.method))  # a code (ParaView's) → its name
        if self.dim not in LATENT_DIMS:
            raise GlobscopeError(f"latent dimension must be one of {LATENT_DIMS}, not {self.dim!r}")
        _positive_or_none(epochs=self.epochs)

    def manifold_params(self) -> dict:
        """Keyword arguments of ``make_manifold`` beyond method and dimension."""
        params = {"seed": self.seed}
        if self.method == "autoencoder":
            if self.epochs:
                params["epochs"] = self.epochs
            if self.device != "auto":
                params["device"] = self.device
        return params


@dataclass(frozen=True)
class LandscapeSettings(_Settings):
    """A loss field over the latent grid and how the engine evaluates it."""

    resolution: int | tuple = DEFAULT_RESOLUTION  # vertices per axis: one value, or one per latent axis
    margin: float = 0.1  # fraction of the models' box added on each side
    bn: str = "recompute"  # BatchNorm statistics of decoded models (ignored without BatchNorm)
    device: str = "auto"
    formulation: str = "auto"
    chunk_points: int = 1024  # grid points per stored chunk (the resume granularity)
    calibration_size: int = 256  # training examples for bn="recompute"
    max_batch_models: int | None = None  # None: from the memory budget
    threads: int | None = None  # None: torch's, or what formulation="auto" measures to be faster
    allow_huge: bool = False  # run a job beyond the HUGE_* limits (one that fits the machine)

    def check(self):
        res = self.resolution if isinstance(self.resolution, tuple) else (self.resolution,)
        if not 1 <= len(res) <= max(LATENT_DIMS) or any(isinstance(r, bool) or not isinstance(r, int) or r < 2
                                                         for r in res):
            raise GlobscopeError(f"resolution must be whole numbers of at least 2 vertices per axis (one value, or "
                                 f"one per latent axis), got {self.resolution!r}")
        if not (isinstance(self.margin, numbers.Real) and math.isfinite(self.margin) and self.margin >= 0):
            raise GlobscopeError(f"margin must be a finite fraction >= 0 of the models' box, got {self.margin!r}")
        object.__setattr__(self, "bn", BN_MODES.name(self.bn))
        if self.formulation not in FORMULATIONS:
            raise GlobscopeError(f"formulation must be one of {', '.join(FORMULATIONS)}, not {self.formulation!r}")
        _positive_or_none(chunk_points=self.chunk_points, calibration_size=self.calibration_size,
                          max_batch_models=self.max_batch_models, threads=self.threads)
        if not isinstance(self.allow_huge, bool):
            raise GlobscopeError(f"allow_huge must be True or False, got {self.allow_huge!r}")

    def n_points(self, dim: int) -> int:
        """Grid vertices in all for a ``dim``-D manifold."""
        res = self.resolution if isinstance(self.resolution, tuple) else (self.resolution,) * dim
        if len(res) != dim:
            raise GlobscopeError(f"resolution needs 1 or {dim} values for a {dim}-D manifold, got {len(res)}")
        n = 1
        for r in res:
            n *= r
        return n


@dataclass(frozen=True)
class TopologySettings(_Settings):
    """Persistence simplification, merge tree and basins of one array of a field.

    ``persistence`` is a fraction of the array's finite range unless ``absolute``. Basins are
    counted on ``log_loss``: the merge tree does not change under a monotone map, but the threshold,
    a fraction of the range, then measures depth in orders of magnitude.
    """

    array: str = LOG_LOSS
    persistence: float = 0.05
    absolute: bool = False

    def check(self):
        if not isinstance(self.array, str) or not self.array:
            raise GlobscopeError("the topology needs the name of a scalar array")
        if not (math.isfinite(self.persistence) and self.persistence >= 0) or \
                (not self.absolute and self.persistence > 1):
            raise GlobscopeError(f"persistence must be a fraction in [0, 1] (or a finite value >= 0 with absolute), "
                                 f"got {self.persistence}")


@dataclass(frozen=True)
class RenderSettings(_Settings):
    """A rendered picture of a bundle (pvbatch)."""

    size: tuple = (1600, 1000)  # pixels, width × height

    def check(self):
        if len(self.size) != 2:
            raise GlobscopeError(f"size needs a width and a height, got {self.size!r}")
        for v in self.size:
            _positive_int("the picture size", v)


@dataclass(frozen=True)
class ConnectSettings(_Settings):
    """Mode-connectivity curves between final checkpoints and how they are measured."""

    curve: str = "bezier"  # "bezier" (quadratic, one control point) or "polychain" (one bend)
    hub: str | None = None  # curves from this run to every other one (None: the set's last run)
    pairs: tuple = ()  # ("G-A", "G-B", …): these pairs instead of the hub's
    points: int = 31  # real-loss evaluations along each curve and line, ends included
    # Adam's steps and learning rate for each curve: on digits-mlp (D = 2410) they take the barrier
    # between two independently trained models from 0.33 to 0 in half a second on one CPU thread
    steps: int = 300
    lr: float = 0.01
    seed: int = 0
    # vertices per axis of the fields computed for manifolds without one (None: the bundle's own
    # field's resolution); UMAP decodes about 60 points a second, so its field is the costly one
    resolution: int | None = None

    def check(self):
        if self.curve not in ("bezier", "polychain"):  # validation.curves.CURVES
            raise GlobscopeError(f"curve must be bezier or polychain, not {self.curve!r}")
        if isinstance(self.pairs, str):
            object.__setattr__(self, "pairs", tuple(p for p in self.pairs.split(",") if p))
        if self.points < 2:
            raise GlobscopeError(f"points must be at least 2 (the ends), got {self.points}")
        _positive_int("steps", self.steps)
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 2):
            raise GlobscopeError(f"resolution must be at least 2 vertices per axis, got {self.resolution!r}")
        if not self.lr > 0:
            raise GlobscopeError(f"lr must be positive, got {self.lr}")


@dataclass(frozen=True)
class PathSettings(_Settings):
    """Saddle paths: the landscape's minimax paths between joined basins, checked for real."""

    samples_per_edge: int = 4  # latent points per grid edge (real losses between the vertices)

    def check(self):
        _positive_int("samples_per_edge", self.samples_per_edge)


@dataclass(frozen=True)
class RebasinSettings(_Settings):
    """Git Re-Basin on pairs of independently trained networks, in one joint landscape."""

    task: str = "mnist-mlp"
    pairs: int = 32  # pairs trained when the experiment makes its own models
    method: str = "weight"  # "weight" or "activation" matching
    epochs: int | None = None  # None: the task's
    # a checkpoint every 2 epochs: five a trajectory on mnist-mlp, 480 models with the re-basined
    # ones, which the joint autoencoder fits in minutes on 2 cores
    checkpoint_every: int | None = 2
    # most epochs of the joint autoencoder, the length of its lr schedule (480 models of D = 50890
    # on mnist-mlp: about 0.45 s an epoch on 2 cores, so the whole experiment stays within half an hour)
    fit_epochs: int = 1200
    seed: int = 0

    def check(self):
        _positive_int("pairs", self.pairs)
        _positive_int("fit_epochs", self.fit_epochs)
        if self.method not in ("weight", "activation"):
            raise GlobscopeError(f"method must be weight or activation (matching), not {self.method!r}")
        _positive_or_none(epochs=self.epochs, checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class DemoSettings(_Settings):
    """The embedded default end to end: zoo → autoencoder → field → topology → render."""

    zoo: ZooSettings = ZooSettings()
    fit: FitSettings = FitSettings()
    landscape: LandscapeSettings = LandscapeSettings()
    topology: TopologySettings = TopologySettings()
    render: RenderSettings = RenderSettings()
    # the other manifolds' fields on a 48² grid: the demo's validation stays near 30 s
    connect: ConnectSettings = ConnectSettings(resolution=48)
    paths: PathSettings = PathSettings()
    with_render: bool = True
    with_validation: bool = True

    @classmethod
    def from_dict(cls, d: dict | None):
        parts = {"zoo": ZooSettings, "fit": FitSettings, "landscape": LandscapeSettings,
                 "topology": TopologySettings, "render": RenderSettings, "connect": ConnectSettings,
                 "paths": PathSettings}
        return cls(**{k: parts[k].from_dict(v) if k in parts else v for k, v in (d or {}).items()
                      if k in parts or k in ("with_render", "with_validation")})


__all__ = ["ZooSettings", "FitSettings", "LandscapeSettings", "TopologySettings", "RenderSettings", "ConnectSettings",
           "PathSettings", "RebasinSettings", "DemoSettings",
           "DEFAULT_RESOLUTION", "HUGE_POINTS", "HUGE_FRACTION", "HUGE_SECONDS", "PROGRESS_LOG_SECONDS"]
