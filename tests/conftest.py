"""Shared fixtures: a small trained digits-mlp zoo, a tiny bundle made from it, a runner for
pvpython/pvbatch scripts (``pv``) with a private cache."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def pv_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("gscache")


@pytest.fixture(scope="session")
def bundle(digits_zoo, tmp_path_factory):
    """A tiny real bundle: the digits-mlp zoo, a PCA manifold, models.vtp and a 16x16
    landscape.vti, made by the core's stages (no ParaView)."""
    from globscope import stages
    from globscope.bundle import write_model_points
    from globscope.settings import FitSettings, LandscapeSettings

    root = tmp_path_factory.mktemp("bundle")
    models = stages.load_models(digits_zoo)
    man = stages.fit(models, FitSettings(method="pca"), out=root / "manifold.pt")
    Z, errors = stages.project(man, models)
    write_model_points(root / "models.vtp", Z, digits_zoo, errors)
    stages.landscape(root / "manifold.pt", root, LandscapeSettings(resolution=16, margin=0.2))
    return root


@pytest.fixture(scope="session")
def pv(pv_cache):
    """``pv(program, script_text, *args, env=…)``: run a script, return (rc, stdout, stderr);
    lines ``RESULT {json}`` in stdout are parsed into the returned ``results`` list."""
    from globscope import paraview_launch as pl

    def run(program, script, *args, env=None, display=False, timeout=240, tmp=None):
        path = Path(tmp or pv_cache) / f"script_{abs(hash(script))}.py"
        path.write_text(script)
        extra = {"OMP_NUM_THREADS": "1", "GLOBSCOPE_CACHE": str(pv_cache), **(env or {})}
        # run_script: the launcher's own retry of an X display that failed to open
        r = pl.run_script(program, path, args, display=display, timeout=timeout, env=extra, check=False)
        results = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        return r.returncode, r.stdout, r.stderr, results

    return run
