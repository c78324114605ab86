"""Manifolds of network weights: the autoencoder and the baselines PCA, Kernel-PCA, UMAP."""

from globscope.errors import GlobscopeError
from globscope.manifolds.autoencoder import AutoencoderManifold
from globscope.manifolds.base import VERSION as FORMAT_VERSION
from globscope.manifolds.base import Manifold, ManifoldInfo, Standardizer, load_manifold, read_manifold_info
from globscope.manifolds.baselines import KernelPCAManifold, PCAManifold, UMAPManifold
from globscope.names import LATENT_DIMS, MANIFOLD_METHODS

# the class of each method (globscope.names.MANIFOLD_METHODS names them and gives their codes)
METHODS = {cls.method: cls for cls in (AutoencoderManifold, PCAManifold, KernelPCAManifold, UMAPManifold)}

__all__ = ["METHODS", "FORMAT_VERSION", "Manifold", "ManifoldInfo", "Standardizer", "make_manifold", "load_manifold",
           "read_manifold_info", "AutoencoderManifold", "PCAManifold", "KernelPCAManifold", "UMAPManifold"]


def make_manifold(method: str, dim: int = 2, **params) -> Manifold:
    """An unfitted manifold of ``method`` (see ``METHODS``) with latent dimension ``dim``."""
    if dim not in LATENT_DIMS:
        raise GlobscopeError(f"latent dimension must be one of {LATENT_DIMS}, not {dim}")
    return METHODS[MANIFOLD_METHODS.name(method)](dim=dim, **params)
