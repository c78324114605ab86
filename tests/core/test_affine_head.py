"""Manifolds' affine heads: ``code_fn(z) @ A + b`` equals ``inverse_transform(z)``."""

import numpy as np
import pytest
import torch

from globscope.manifolds import make_manifold


def _weights(n=40, D=30, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1, 1, size=(n, 2))
    return (z @ rng.normal(size=(2, D)) + np.sin(z[:, :1] * 3) @ rng.normal(size=(1, D))
            + rng.normal(size=D)).astype(np.float32)


@pytest.mark.parametrize("method,dim,params,K", [
    ("pca", 2, {}, 2), ("pca", 3, {"standardize": "feature"}, 3),
    ("autoencoder", 2, {"epochs": 30}, 128), ("autoencoder", 4, {"epochs": 30, "standardize": "feature"}, 128),
])
def test_affine_head_reproduces_inverse_transform(method, dim, params, K):
    W = _weights()
    man = make_manifold(method, dim, **params).fit(W)
    code_fn, A, b = man.affine_head("cpu")
    Z = np.vstack([man.transform(W[:5]), np.random.default_rng(1).normal(size=(4, dim)) * 3])
    C = code_fn(torch.as_tensor(Z, dtype=torch.float32))
    assert C.shape == (len(Z), K) and A.shape == (K, W.shape[1]) and b.shape == (W.shape[1],)
    assert not C.requires_grad and A.dtype == b.dtype == torch.float32
    ref = man.inverse_transform(Z)
    got = (C.double() @ A.double() + b.double()).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["kernel-pca"])
def test_non_affine_manifolds_have_no_head(method):
    assert make_manifold(method, 2).fit(_weights()).affine_head() is None
