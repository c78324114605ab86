"""Fixtures of the ParaView tests: a tiny bundle, a runner for pvpython/pvbatch scripts in the
environment ``globscope.paraview_launch`` builds, a private cache and GUI settings folder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from globscope.environment import paraview_side

needs_paraview = pytest.mark.skipif(shutil.which("pvpython") is None or shutil.which("pvbatch") is None,
                                    reason="ParaView (pvpython, pvbatch) not installed")
pytestmark = [pytest.mark.paraview, needs_paraview]


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
        cmd = pl.command(program, [path, *args], display=display)
        r = subprocess.run(cmd, env=pl.environment(extra), capture_output=True, text=True, timeout=timeout)
        results = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        return r.returncode, r.stdout, r.stderr, results

    return run


# the top of a script run in ParaView: Globscope's entry helper (on PYTHONPATH in pl.environment())
HOOK = """
import globscope_entry
globscope_entry.setup()
"""
PLUGIN = str(paraview_side().plugin / "GlobscopePlugin.py")
