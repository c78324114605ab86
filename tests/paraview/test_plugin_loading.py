"""The 5.11 compatibility hook and the three ways the plugin loads (real pvpython subprocesses)."""

import os
import subprocess

import pytest
from conftest import HOOK, PLUGIN, needs_paraview

pytestmark = [pytest.mark.paraview, needs_paraview]

CHECK = """
from paraview import servermanager as sm
pxm = sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()
names = ["GlobscopeManifold", "GlobscopeLossLandscape", "GlobscopeMergeTree", "GlobscopePersistenceDiagram",
         "GlobscopeTopologicalSimplification", "GlobscopeProjectModels", "GlobscopeBasins"]
import json
print("RESULT " + json.dumps({n: pxm.GetPrototypeProxy("filters", n) is not None for n in names}
      | {"reader": pxm.GetPrototypeProxy("sources", "GlobscopeCheckpointSetReader") is not None}))
"""


def test_hook_is_needed_on_511_and_fixes_it(pv):
    """Without the hook ParaView 5.11's plugin loader fails to import on Python 3.11; with it, it
    imports (and the hook adds nothing where the loader does not use getargspec)."""
    probe = "import paraview.detail.pythonalgorithm as m; print('RESULT {\"ok\": true}')"
    # no hook at all: drop our compat folder from PYTHONPATH
    from globscope import paraview_launch as pl

    env = pl.environment({"OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if not p.endswith("compat"))
    r = subprocess.run([pl.find_executable("pvpython"), "-c", probe], env=env, capture_output=True, text=True,
                       timeout=120)
    where = "import importlib.util as u; print(u.find_spec('paraview').submodule_search_locations[0])"
    pv_dir = subprocess.run([pl.find_executable("pvpython"), "-c", where], env=env, capture_output=True,
                            text=True).stdout.strip()
    src = open(pv_dir + "/detail/pythonalgorithm.py").read()
    if "getargspec" in src:
        assert r.returncode != 0 and "getargspec" in r.stderr
    rc, out, err, res = pv("pvpython", HOOK + probe)
    assert rc == 0, err
    assert res == [{"ok": True}]


def test_load_plugin_route(pv):
    script = HOOK + f"from paraview.simple import *\nLoadPlugin({PLUGIN!r}, remote=False)\n" + CHECK
    rc, out, err, res = pv("pvpython", script)
    assert rc == 0, err[-3000:]
    assert res and all(res[0].values()), res


def test_pv_plugin_path_route_with_usercustomize(pv):
    """PV_PLUGIN_PATH autoload: no code of ours runs before ParaView, only usercustomize.py."""
    rc, out, err, res = pv("pvpython", "from paraview.simple import *\n" + CHECK)
    assert rc == 0, err[-3000:]
    assert res and all(res[0].values()), (res, err[-2000:])


def test_plugin_config_xml_route(pv, tmp_path):
    xml = tmp_path / "globscope.plugins.xml"
    xml.write_text(f'<?xml version="1.0"?>\n<Plugins>\n  <Plugin name="Globscope" filename="{PLUGIN}" '
                   f'auto_load="1"/>\n</Plugins>\n')
    rc, out, err, res = pv("pvpython", "from paraview.simple import *\n" + CHECK,
                           env={"PV_PLUGIN_PATH": "", "PV_PLUGIN_CONFIG_FILE": str(xml)})
    assert rc == 0, err[-3000:]
    assert res and all(res[0].values()), (res, err[-2000:])
