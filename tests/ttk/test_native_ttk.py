"""Native TTK against Globscope's engine, through the routing module (skipped without TTK)."""

import shutil

import pytest
from ttk_reference import FIELDS

pytestmark = [pytest.mark.ttk, pytest.mark.paraview]


@pytest.fixture(scope="module")
def report():
    if shutil.which("pvpython") is None:
        pytest.skip("ParaView not installed")
    from globscope import paraview_launch as pl

    rep = pl.doctor()
    if not rep["ttk"].get("present"):
        pytest.skip(f"TTK absent: {rep['ttk'].get('error')}")
    return rep


def test_routing_picks_ttk(report):
    assert report["engine"] == "ttk"
    assert report["ttk"]["merge_tree_proxy"] in ("TTKMergeTree", "TTKMergeandContourTreeFTM")


def test_ttk_and_globscope_merge_trees_agree(report, tmp_path):
    import json

    from globscope import paraview_launch as pl

    field = FIELDS / "wells2d_64x48.vti"
    script = tmp_path / "cmp.py"
    script.write_text(f"""
import os, sys, json
import globscope_entry
globscope_entry.setup()
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
gs.load_plugins()
from python_filters import ttk as routing
src = XMLImageDataReader(FileName=[{str(field)!r}])
out = {{}}
for engine in ("ttk", "globscope"):
    os.environ["GLOBSCOPE_TOPOLOGY_ENGINE"] = "auto" if engine == "ttk" else "globscope"
    routing.detect(refresh=True)
    t = routing.merge_tree(src, "f")
    n = sm.Fetch(t, idx=0)
    v = n.GetPointData().GetArray("VertexId")
    out[engine] = sorted(int(v.GetValue(i)) for i in range(v.GetNumberOfTuples()))
print("RESULT " + json.dumps(out))
""")
    r = pl.run_script("pvpython", script, display=False, check=False, timeout=300)
    res = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res, r.stderr[-3000:]
    assert res[0]["ttk"] == res[0]["globscope"]
