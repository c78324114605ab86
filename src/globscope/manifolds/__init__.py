"""Manifolds of network weights: the autoencoder and the baselines PCA, Kernel-PCA, UMAP."""

from globscope.errors import GlobscopeError
from globscope.manifolds.autoencoder import AutoencoderManifold
from globscope.manifolds.base import Manifold, ManifoldInfo, Standardizer, load_manifold, read_manifold_info
from globscope.manifolds.baselines import KernelPCAManifold, PCAManifold, UMAPManifold

METHODS = {cls.method: cls for cls in (AutoencoderManifold, PCAManifold, KernelPCAManifold, UMAPManifold)}
DIMS = (2, 3, 4)

__all__ = ["METHODS", "DIMS", "Manifold", "ManifoldInfo", "Standardizer", "make_manifold", "load_manifold",
           "read_manifold_info", "AutoencoderManifold", "PCAManifold", "KernelPCAManifold", "UMAPManifold"]


def make_manifold(method: str, dim: int = 2, **params) -> Manifold:
    """An unfitted manifold of ``method`` (see ``METHODS``) with latent dimension ``dim``."""
    if method not in METHODS:
        raise GlobscopeError(f"unknown manifold method {method!r}: choose one of {', '.join(METHODS)}")
    if dim not in DIMS:
        raise GlobscopeError(f"latent dimension must be one of {DIMS}, not {dim}")
    return METHODS[method](dim=dim, **params)
