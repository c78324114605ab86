"""Fixtures of the ParaView tests: a tiny bundle, a runner for pvpython/pvbatch scripts in the
environment ``globscope.paraview_launch`` builds, a private cache and GUI settings folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

needs_paraview = pytest.mark.skipif(shutil.which("pvpython") is None or shutil.which("pvbatch") is None,
                                    reason="ParaView (pvpython, pvbatch) not installed")
pytestmark = [pytest.mark.paraview, needs_paraview]


@pytest.fixture(scope="session")
def pv_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("gscache")


@pytest.fixture(scope="session")
def bundle(digits_zoo, tmp_path_factory):
    from bundle_fixture import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundle"), zoo=digits_zoo)


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


HOOK = f"""
import sys
sys.path.insert(0, {str(HERE.parents[1] / 'plugin' / 'compat')!r})
import globscope_pv_compat
globscope_pv_compat.install()
"""
PLUGIN = str(HERE.parents[1] / "plugin" / "GlobscopePlugin.py")
