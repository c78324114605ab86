"""The baselines of the paper's Table 1 behind the same contract: PCA, Kernel-PCA, UMAP.

Their scikit-learn/umap estimators hold objects that only pickle could save, and loading
pickles can run code; so a saved baseline stores its standardised training weights and is
refitted, deterministically, on load.
"""

from __future__ import annotations

import numpy as np
import torch

from globscope.manifolds.base import Manifold


class _EstimatorManifold(Manifold):
    """A manifold backed by an estimator with fit/transform/inverse_transform."""

    def _make_estimator(self):
        raise NotImplementedError

    def _fit(self, X, progress=None):
        self.X_fit_ = np.asarray(X, dtype=np.float32)
        self.estimator_ = self._make_estimator().fit(self.X_fit_)
        if progress:
            progress(1.0)

    def _transform(self, X):
        return self.estimator_.transform(np.asarray(X, dtype=np.float32))

    def _inverse(self, Z):
        return self.estimator_.inverse_transform(np.asarray(Z, dtype=np.float32))

    def _state(self) -> dict:
        return {"X_fit_": torch.from_numpy(self.X_fit_)}

    def _load_state(self, s: dict) -> None:
        self._fit(s["X_fit_"].numpy())


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

    def _make_estimator(self):
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

    def _make_estimator(self):
        from sklearn.decomposition import KernelPCA

        return KernelPCA(n_components=self.dim, kernel=self.kernel, gamma=self.gamma, alpha=self.alpha,
                         fit_inverse_transform=True, random_state=self.seed)


class UMAPManifold(_EstimatorManifold):
    """UMAP (``umap-learn``) with its ``inverse_transform``.

    Parameters
    ----------
    n_neighbors, min_dist : as ``umap.UMAP``; n_neighbors is capped at N - 1.
    """

    method = "umap"

    def __init__(self, dim=2, n_neighbors=15, min_dist=0.1, standardize="global", seed=0):
        self.dim, self.n_neighbors, self.min_dist = dim, n_neighbors, min_dist
        self.standardize, self.seed = standardize, seed

    def _make_estimator(self):
        import warnings

        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        import umap

        return umap.UMAP(n_components=self.dim, n_neighbors=min(self.n_neighbors, len(self.X_fit_) - 1),
                         min_dist=self.min_dist, random_state=self.seed)
