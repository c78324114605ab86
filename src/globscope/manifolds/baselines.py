"""The baselines of the paper's Table 1 behind the same contract: PCA, Kernel-PCA, UMAP.

A saved baseline stores its fitted estimator — every attribute, as tensors and plain values (see
``globscope.manifolds.estimator_state``) — and loading sets them back on a new estimator with the
same hyper-parameters: no refit, and ``transform`` / ``inverse_transform`` of the loaded manifold
equal the fitted one's bit for bit.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from globscope.errors import GlobscopeError
from globscope.manifolds.base import Manifold
from globscope.manifolds.estimator_state import StateError, decode_estimator, encode_estimator

log = logging.getLogger(__name__)


class _EstimatorManifold(Manifold):
    """A manifold backed by an estimator with fit/transform/inverse_transform."""

    _libraries: tuple[str, ...] = ("scikit-learn",)  # whose attributes the saved state is

    def _make_estimator(self, n_samples: int):
        """An unfitted estimator with this manifold's hyper-parameters, for ``n_samples`` models."""
        raise NotImplementedError

    def _fit(self, X, progress=None):
        X = np.asarray(X, dtype=np.float32)
        self.estimator_ = self._make_estimator(len(X)).fit(X)
        if progress:
            progress(1.0)

    def _transform(self, X):
        return self.estimator_.transform(np.asarray(X, dtype=np.float32))

    def _inverse(self, Z):
        return self.estimator_.inverse_transform(np.asarray(Z, dtype=np.float32))

    def _state(self) -> dict:
        try:
            return {"estimator": encode_estimator(self.estimator_), "libraries": _library_versions(self._libraries)}
        except StateError as e:
            raise GlobscopeError(f"cannot save this {self.method} manifold: {e}") from None

    def _load_state(self, s: dict) -> None:
        est = decode_estimator(s["estimator"])
        expected = type(self._make_estimator(2))
        if type(est) is not expected:
            raise StateError(f"a {self.method} manifold holds a {expected.__name__}, not a {type(est).__name__}")
        # the state is the libraries' own attributes: exact reproduction is promised for the same versions
        now = _library_versions(self._libraries)
        for lib, version in (s.get("libraries") or {}).items():
            if lib in now and now[lib] != version:
                log.warning("%s manifold saved with %s %s, loaded with %s: restoring its fitted state is exact "
                            "only under the version that saved it; refit it if its outputs look wrong",
                            self.method, lib, version, now[lib])
        self.estimator_ = est


def _library_versions(dists) -> dict:
    """Installed versions of the distributions ``dists`` (those missing are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


class PCAManifold(_EstimatorManifold):
    """Principal component analysis onto ``dim`` components (linear, exact inverse on the plane)."""

    method = "pca"

    def __init__(self, dim=2, standardize="global", seed=0):
        self.dim, self.standardize, self.seed = dim, standardize, seed

    def affine_head(self, device=None):
        """PCA's inverse is affine in the latent point itself: ``code_fn`` is the identity (K = dim),
        ``A = components·scale``, ``b = pca_mean·scale + mean`` (see ``Manifold.affine_head``)."""
        self._check_fitted()
        est = self.estimator_
        comp = np.asarray(est.components_, dtype=np.float64)
        if getattr(est, "whiten", False):
            comp = comp * np.sqrt(est.explained_variance_)[:, None]
        scale, mean = self.scaler_.scale_, self.scaler_.mean_
        A = torch.as_tensor(comp * scale, dtype=torch.float32, device=device)
        b = torch.as_tensor(np.asarray(est.mean_, dtype=np.float64) * scale + mean, dtype=torch.float32,
                            device=device)
        return (lambda z: z), A, b

    def _make_estimator(self, n_samples):
        from sklearn.decomposition import PCA

        return PCA(n_components=self.dim, svd_solver="full", random_state=self.seed)


class KernelPCAManifold(_EstimatorManifold):
    """Kernel-PCA with a learned pre-image map (``fit_inverse_transform=True``).

    Parameters
    ----------
    kernel, gamma, alpha : as scikit-learn's ``KernelPCA`` (gamma None means 1/D).
    """

    method = "kernel-pca"

    def __init__(self, dim=2, kernel="rbf", gamma=None, alpha=1.0, standardize="global", seed=0):
        self.dim, self.kernel, self.gamma, self.alpha = dim, kernel, gamma, alpha
        self.standardize, self.seed = standardize, seed

    def _make_estimator(self, n_samples):
        from sklearn.decomposition import KernelPCA

        return KernelPCA(n_components=self.dim, kernel=self.kernel, gamma=self.gamma, alpha=self.alpha,
                         fit_inverse_transform=True, random_state=self.seed)


class UMAPManifold(_EstimatorManifold):
    """UMAP (``umap-learn``) with its ``inverse_transform``.

    Parameters
    ----------
    n_neighbors, min_dist : as ``umap.UMAP``; n_neighbors is capped at N - 1.

    Notes
    -----
    What a saved UMAP keeps, and why it is enough (umap-learn's ``transform`` and
    ``inverse_transform``): for N < 4096 models (``_small_data``) ``transform`` measures exact
    distances to the training data ``_raw_data`` with ``_input_distance_func``, keeps the
    ``_n_neighbors`` nearest, and optimises the new points against ``embedding_`` with ``_a``, ``_b``,
    ``_initial_alpha``, seeded by ``transform_seed``; given the training data itself it returns
    ``embedding_`` (``_input_hash``). ``inverse_transform`` triangulates ``embedding_`` and optimises
    against ``_raw_data`` with ``_sigmas``, ``_rhos``, ``_a``, ``_b`` and ``_inverse_distance_func``.
    All the data are arrays or plain values and are stored with every other attribute (the fuzzy
    graph ``graph_`` as CSR arrays). The numba distance functions are not data: they are stored as
    their key in umap's tables of named distances, which is how UMAP derives them from ``metric``
    and ``output_metric``. For N >= 4096 ``transform`` queries the search index
    ``_knn_search_index`` (pynndescent); it is restored from its arrays (trees, search graph, data,
    random states) through pynndescent's own ``__setstate__``, which
    compiles its search closures again; nothing is refitted or rebuilt.
    """

    method = "umap"
    _libraries = ("umap-learn", "pynndescent", "scikit-learn")

    def __init__(self, dim=2, n_neighbors=15, min_dist=0.1, standardize="global", seed=0):
        self.dim, self.n_neighbors, self.min_dist = dim, n_neighbors, min_dist
        self.standardize, self.seed = standardize, seed

    def _make_estimator(self, n_samples):
        import warnings

        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        import umap

        return umap.UMAP(n_components=self.dim, n_neighbors=min(self.n_neighbors, n_samples - 1),
                         min_dist=self.min_dist, random_state=self.seed)
