"""Shared fixtures: a small trained digits-mlp zoo, the shared reference folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# One thread per process: OpenMP threads spin, and on a 2-core machine shared with the
# subprocesses some tests start, two spinning pools slow small workloads down fifty-fold.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory):
    """A real checkpoint set: digits-mlp, 3 variants × 4 epochs, checkpoint every epoch."""
    from globscope.settings import ZooSettings
    from globscope.zoo import train_zoo

    out = tmp_path_factory.mktemp("zoo")
    return train_zoo(ZooSettings("digits-mlp", n_variants=3, epochs=4, checkpoint_every=1, seed=0), out)


@pytest.fixture(scope="session")
def digits_weights(digits_zoo):
    from globscope.tasks import get_task

    W, _ = digits_zoo.load_weights(get_task("digits-mlp").layout)
    return W
