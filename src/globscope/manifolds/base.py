"""The manifold contract (scikit-learn's): ``fit(W) -> self``, ``transform(W) -> Z``,
``inverse_transform(Z) -> W``; hyper-parameters stored verbatim, learned state in trailing-underscore
attributes. Saved files hold tensors and plain values only and load with ``weights_only=True``."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path

FORMAT = "globscope-manifold"
# 2: baselines store their fitted estimator; 1 stored only their training weights and refitted
VERSION = 2


class Standardizer:
    """Centre each weight coordinate; scale by one global factor (``"global"``), per coordinate
    (``"feature"``) or not at all (``"none"``).

    The global scale keeps squared error in standardised units proportional to squared error in
    weight space, so a model that minimises its training loss minimises the reported
    reconstruction MSE; per-coordinate scaling would amplify coordinates that barely move.
    """

    MODES = ("global", "feature", "none")

    def __init__(self, mode: str = "global"):
        if mode not in self.MODES:
            raise GlobscopeError(f"standardize must be one of {self.MODES}, not {mode!r}")
        self.mode = mode

    def fit(self, W: np.ndarray) -> Standardizer:
        W = np.asarray(W, dtype=np.float64)
        self.mean_ = W.mean(0)
        if self.mode == "global":
            self.scale_ = np.full(W.shape[1], np.sqrt(((W - self.mean_) ** 2).mean()) or 1.0)
        elif self.mode == "feature":
            s = W.std(0)
            self.scale_ = np.where(s > 0, s, 1.0)
        else:
            self.mean_[:] = 0.0
            self.scale_ = np.ones(W.shape[1])
        return self

    def transform(self, W):
        return (np.asarray(W, dtype=np.float64) - self.mean_) / self.scale_

    def inverse_transform(self, X):
        return np.asarray(X, dtype=np.float64) * self.scale_ + self.mean_

    def state(self) -> dict:
        return {"mode": self.mode, "mean_": torch.from_numpy(self.mean_), "scale_": torch.from_numpy(self.scale_)}

    @classmethod
    def from_state(cls, s: dict) -> Standardizer:
        obj = cls(s["mode"])
        obj.mean_, obj.scale_ = s["mean_"].numpy(), s["scale_"].numpy()
        return obj


class Manifold:
    """Base of all manifolds: parameter handling, checks, ``fit_transform``, save/load.

    Subclasses implement ``_fit(X)``, ``_transform(X)``, ``_inverse(Z)`` on standardised weights
    and ``_state()`` / ``_load_state(s)`` for their learned state.
    """

    method: str = ""
    # hyper-parameters added since the first file format, with the value files without them were fitted with
    ADDED_PARAMS: dict = {}

    # -- scikit-learn's parameter contract --------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- contract ----------------------------------------------------------------------------
    def fit(self, W, progress=None) -> Manifold:
        """Learn the map from weights W of shape (N, D)."""
        t0 = time.perf_counter()
        W = self._check(W, fitted=False)
        self.n_features_in_ = W.shape[1]
        self.scaler_ = Standardizer(getattr(self, "standardize", "global")).fit(W)
        self._fit(self.scaler_.transform(W), progress=progress)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def transform(self, W) -> np.ndarray:
        """Latent coordinates Z of shape (N, dim) of weights W of shape (N, D)."""
        W = self._check(W)
        return np.asarray(self._transform(self.scaler_.transform(W)), dtype=np.float64)

    def inverse_transform(self, Z) -> np.ndarray:
        """Weights of shape (N, D), float32, decoded from latent points Z of shape (N, dim)."""
        self._check_fitted()
        Z = np.atleast_2d(np.asarray(Z, dtype=np.float64))
        if Z.shape[1] != self.dim:
            raise GlobscopeError(f"latent points have {Z.shape[1]} coordinates, the manifold has {self.dim}")
        return self.scaler_.inverse_transform(self._inverse(Z)).astype(np.float32)

    def affine_head(self, device=None):
        """The decoder as an affine map of a code: ``inverse_transform(z) == code_fn(z) @ A + b``.

        For the loss-field engine, which evaluates a network's first layer in code space (see
        ``globscope.landscape.evaluation``).

        Parameters
        ----------
        device : str or torch.device, optional

        Returns
        -------
        (code_fn, A, b) or None
            ``code_fn``: latent (B, dim) float32 tensor -> codes (B, K) tensor; ``A``: (K, D)
            float32 tensor; ``b``: (D,) float32 tensor, all on ``device``. None when the decoder
            does not end in an affine map (the default; Kernel-PCA, UMAP).
        """
        return None

    def nan_state(self) -> list[str]:
        """Names of the learned state's values that hold NaN (a diverged fit, a damaged file), e.g.
        ``["estimator.components_"]``; empty for a sound manifold.

        The state is what ``save`` writes: the scaler's and ``_state()``'s tensors and numbers.
        Infinities are not looked for: UMAP keeps one on purpose (``_disconnection_distance``).
        """
        from globscope.manifolds.estimator_state import KIND

        self._check_fitted()
        found = []

        def walk(v, name):
            if isinstance(v, (torch.Tensor, np.ndarray, float)):
                a = torch.as_tensor(v)
                if a.is_floating_point() and bool(torch.isnan(a).any()):
                    found.append(name)
            elif isinstance(v, dict):
                for k, x in v.items():
                    if k in (KIND, "class"):
                        continue
                    # the tagged dicts of estimator_state: their payload keys are no names of the user's
                    walk(x, name if KIND in v and k in ("attrs", "items", "value") else f"{name}.{k}".lstrip("."))
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    walk(x, f"{name}[{i}]")

        walk({"scaler": self.scaler_.state(), **self._state()}, "")
        return found

    def fit_transform(self, W, progress=None) -> np.ndarray:
        return self.fit(W, progress=progress).transform(W)

    def reconstruction_mse(self, W) -> float:
        """Mean squared error of ``inverse_transform(transform(W))`` in the original weight space."""
        W = np.asarray(W, dtype=np.float32)
        return float(np.mean((self.inverse_transform(self.transform(W)).astype(np.float64) - W) ** 2))

    def _check_fitted(self):
        if not hasattr(self, "scaler_"):
            raise GlobscopeError(f"{type(self).__name__} is not fitted yet: call fit(W) first")

    def _check(self, W, fitted=True) -> np.ndarray:
        if fitted:
            self._check_fitted()
        W = np.asarray(W)
        if W.ndim != 2:
            raise GlobscopeError(f"weights must be a 2-D array (N, D), got shape {W.shape}")
        if fitted and W.shape[1] != self.n_features_in_:
            raise GlobscopeError(f"weights have D={W.shape[1]}, the manifold was fitted on D={self.n_features_in_}")
        if not fitted and W.shape[0] < self.dim + 2:
            raise GlobscopeError(f"need at least {self.dim + 2} models to fit a {self.dim}-D manifold, "
                                 f"got {W.shape[0]}")
        return W

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the manifold (tensors and plain values only) atomically."""
        self._check_fitted()
        blob = {"format": FORMAT, "version": VERSION, "method": self.method, "params": self.get_params(),
                "n_features_in_": self.n_features_in_, "fit_seconds_": self.fit_seconds_,
                "scaler_": self.scaler_.state(),
                "state_": self._state(), "meta": getattr(self, "meta_", {})}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        return Path(path)


@dataclass(frozen=True)
class ManifoldInfo:
    """What a manifold file says about itself, read without building the model.

    Attributes
    ----------
    path : Path
    method : str
        A key of ``METHODS``.
    dim : int
        Latent dimension d.
    n_features_in_ : int
        Weight dimension D the manifold was fitted on.
    params : dict
        Hyper-parameters (``get_params()`` of the saved manifold).
    meta : dict
        What the writer set as ``meta_`` (task, checkpoint set, layout, …).
    fit_seconds : float
    version : int
        File format version.
    """

    path: Path
    method: str
    dim: int
    n_features_in_: int
    params: dict = field(repr=False)
    meta: dict = field(repr=False)
    fit_seconds: float
    version: int


def _read_blob(path: Path, mmap: bool = False) -> dict:
    """The top-level dict of a manifold file, checked; any failure is a ``GlobscopeError`` naming it.

    With ``mmap=True`` tensors are mapped, not read, so looking at the small entries costs little.
    """
    from globscope.manifolds import METHODS

    if not path.is_file():
        raise GlobscopeError(f"{path}: manifold file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any failure to read is the file's problem
        raise GlobscopeError(f"{path}: not a readable Globscope manifold ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise GlobscopeError(f"{path}: not a Globscope manifold file")
    method, version = blob.get("method"), blob.get("version")
    if method not in METHODS:
        raise GlobscopeError(f"{path}: unknown manifold method {method!r}")
    if version not in (1, VERSION):
        raise GlobscopeError(f"{path}: manifold file format version {version!r} is not one this Globscope "
                             f"reads (1 or {VERSION}); a newer Globscope may have written it")
    if not isinstance(blob.get("params"), dict) or not isinstance(blob.get("meta", {}), dict):
        raise GlobscopeError(f"{path}: damaged manifold file (params or meta is not a dict)")
    if version == 1 and method != "autoencoder":
        # version 1 kept only the training weights and refitted on load; that path is gone
        params, meta = blob["params"], blob.get("meta") or {}
        cmd = (f"globscope fit {meta.get('checkpoint_set') or 'SET'} --method {method} --dim {params.get('dim')} "
               f"--seed {params.get('seed')} --out {path}")
        raise GlobscopeError(f"{path}: an old (format version 1) {method} manifold, which stored only its training "
                             f"weights and would have to be refitted to load; refit it with `{cmd}`")
    return blob


def read_manifold_info(path) -> ManifoldInfo:
    """A manifold file's method, dimensions, hyper-parameters, ``meta`` and fit time, without
    building the model (no network, no estimator; tensors are memory-mapped, not read).

    Parameters
    ----------
    path : str or Path
        A file written by ``Manifold.save``.

    Returns
    -------
    ManifoldInfo

    Raises
    ------
    GlobscopeError
        For a missing, foreign, damaged or too old / too new file, naming it.
    """
    path = Path(path)
    blob = _read_blob(path, mmap=True)
    try:
        return ManifoldInfo(path=path, method=blob["method"], dim=int(blob["params"]["dim"]),
                            n_features_in_=int(blob["n_features_in_"]), params=dict(blob["params"]),
                            meta=dict(blob.get("meta") or {}), fit_seconds=float(blob["fit_seconds_"]),
                            version=int(blob["version"]))
    except (KeyError, TypeError, ValueError) as e:
        raise GlobscopeError(f"{path}: damaged manifold file ({type(e).__name__}: {e})") from None


def load_manifold(path) -> Manifold:
    """Load a manifold saved by ``Manifold.save`` (no pickled code is run, nothing is refitted).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Manifold
        Fitted, of the saved method, with the saved ``meta_``.

    Raises
    ------
    GlobscopeError
        As ``read_manifold_info``, and for a state that does not restore.
    """
    from globscope.manifolds import METHODS

    path = Path(path)
    blob = _read_blob(path)
    try:
        cls = METHODS[blob["method"]]
        # files written before a hyper-parameter existed were fitted with its older value
        obj = cls(**{**cls.ADDED_PARAMS, **blob["params"]})
        obj.n_features_in_ = blob["n_features_in_"]
        obj.fit_seconds_ = blob["fit_seconds_"]
        obj.scaler_ = Standardizer.from_state(blob["scaler_"])
        obj.meta_ = blob.get("meta", {})
        obj._load_state(blob["state_"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise GlobscopeError(f"{path}: damaged manifold file ({type(e).__name__}: {e})") from None
    return obj
