"""Native TTK against Globscope's engine, through the routing table (skipped where TTK is absent).

CI points ``PV_PLUGIN_PATH`` at a real TTK 1.1.0 plugin when the team's workbench has one
(``.ci/run``); a user runs them the same way with their own TTK.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ttk_reference import FIELDS

pytestmark = [pytest.mark.ttk, pytest.mark.paraview]

NAMES = ["wells2d_64x48", "plateau2d_40x40", "wells3d_24x20x16", "ridged2d_256x256"]
HOOK = "import globscope_entry\nglobscope_entry.setup()\n"


@pytest.fixture(scope="module")
def report():
    if shutil.which("pvpython") is None:
        pytest.skip("ParaView not installed")
    from globscope import paraview_launch as pl

    rep = pl.doctor()
    if not rep["ttk"].get("present"):
        pytest.skip(f"TTK absent: {rep['ttk'].get('error')}")
    return rep


def _pvpython(script: str, tmp_path, env=None) -> dict:
    from globscope import paraview_launch as pl

    path = tmp_path / "script.py"
    path.write_text(HOOK + script)
    r = pl.run_script("pvpython", path, display=False, check=False, timeout=300, env=env)
    res = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res, (r.stdout + r.stderr)[-3000:]
    return res[0]


def test_doctor_reports_ttk_and_its_version(report):
    from python_filters.ttk import ROUTES

    assert report["engine"] == "ttk"
    ttk = report["ttk"]
    assert ttk["version"] in ROUTES and ttk["plugin_version"]
    assert ttk["plugin_version"].startswith(ttk["version"])  # the plugin's own "1.1" and the route's
    assert ttk["merge_tree_proxy"] == ROUTES[ttk["version"]].merge_tree


def test_routing_table_facts_hold_for_the_real_plugin(report, tmp_path):
    """The properties the routing sets mean what the table says, in the plugin that is loaded."""
    r = _pvpython("""
import json
from paraview import servermanager as sm
import globscope_state as gs
gs.load_plugins()
from python_filters import ttk as routing
route = routing.route()
pxm = sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()

def prop(proxy, name):
    p = pxm.GetPrototypeProxy("filters", proxy).GetProperty(name)
    d = p.FindDomain("vtkSMEnumerationDomain")
    entries = {d.GetEntryText(i): d.GetEntryValue(i) for i in range(d.GetNumberOfEntries())} if d else None
    return {"default": p.GetDefaultValue(0) if hasattr(p, "GetDefaultValue") else None, "enum": entries}

out = {"version": route.version,
       "pair_type": prop(routing.SIMPLIFICATION, "PairType"),
       "absolute": prop(routing.SIMPLIFICATION, "ThresholdIsAbsolute"),
       "tree_type": prop(route.merge_tree, "Tree Type"),
       "has": {n: pxm.GetPrototypeProxy("filters", routing.DIAGRAM).GetProperty(n) is not None
               for n in ("DMSDimensions", route.diagram_array)},
       "arrays": [pxm.GetPrototypeProxy("filters", x).GetProperty(n) is not None for x, n in (
           (routing.SIMPLIFICATION, route.simplification_array), (route.merge_tree, route.merge_tree_array))],
       "pvsm_type": route.merge_tree}
print("RESULT " + json.dumps(out))
""", tmp_path)
    from python_filters.ttk import ROUTES

    route = ROUTES[r["version"]]
    assert r["pair_type"]["enum"]["Minimum-Saddle"] == route.simplification_pair_type == 1
    assert r["pair_type"]["enum"]["Extremum-Saddle"] == 0
    assert r["tree_type"]["enum"]["Join Tree"] == route.tree_type == 0
    assert r["tree_type"]["default"] == 2  # contour tree unless set
    assert r["has"][route.diagram_array] and all(r["arrays"])
    assert r["has"]["DMSDimensions"] == (not route.diagram_has_all_dimensions)
    if r["version"] == "1.1":
        assert r["absolute"]["default"] == 1  # 1.2 changed it to 0: the routing always sets it


ENGINES_SCRIPT = """
import json, sys
import numpy as np
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
gs.load_plugins()
from python_filters import ttk as routing
from python_filters import vtkconv as vc

def arrays(ds):
    out = {}
    for kind, att in (("point", ds.GetPointData()), ("cell", ds.GetCellData())):
        for i in range(att.GetNumberOfArrays()):
            a = att.GetArray(i)
            out[kind + "/" + a.GetName()] = vc.from_vtk_array(a).tolist()
    return out

res = {}
for engine in ("ttk", "globscope"):
    os.environ["GLOBSCOPE_TOPOLOGY_ENGINE"] = "auto" if engine == "ttk" else "globscope"
    routing.detect(refresh=True)
    r = {"engine": routing.detect()["engine"]}
    src = XMLImageDataReader(FileName=[sys.argv[1]])
    simp = routing.simplification(src, "f", 0.05, False)
    for tag, field in (("input", src), ("simplified", simp)):
        tree = routing.merge_tree(field, "f")
        tree.UpdatePipeline()
        diagram = routing.persistence_diagram(field, "f")
        r[tag] = {"nodes": arrays(sm.Fetch(tree, idx=0)), "arcs": arrays(sm.Fetch(tree, idx=1)),
                  "seg": arrays(sm.Fetch(tree, idx=2)), "diagram": arrays(sm.Fetch(diagram))}
    r["simplified"]["field"] = arrays(sm.Fetch(simp))
    res[engine] = r
print("RESULT " + json.dumps(res))
"""


def _by_vertex(t):
    """A tree's nodes keyed by vertex, arcs as (down vertex, up vertex), segmentation in those terms."""
    n, a, s = t["nodes"], t["arcs"], t["seg"]
    vertex = dict(zip(n["point/NodeId"], n["point/VertexId"]))
    arc_key = {sid: (vertex[d], vertex[u]) for sid, d, u in zip(a["cell/SegmentationId"], a["cell/downNodeId"],
                                                                 a["cell/upNodeId"])}
    nodes = {v: (ct, size, span) for v, ct, size, span in zip(n["point/VertexId"], n["point/CriticalType"],
                                                               n["point/RegionSize"], n["point/RegionSpan"])}
    arcs = {arc_key[sid]: size for sid, size in zip(a["cell/SegmentationId"], a["cell/RegionSize"])}
    spans = {arc_key[sid]: span for sid, span in zip(a["cell/SegmentationId"], a["cell/RegionSpan"])}
    seg = [arc_key[i] for i in s["point/SegmentationId"]]
    return nodes, arcs, seg, spans


@pytest.mark.parametrize("name", NAMES)
def test_builtin_filters_give_native_ttks_outputs(report, tmp_path, name):
    """Globscope's filters and TTK's, in one pvpython on the same field: the same arrays, the same
    join tree and segmentation (input and simplified), the same simplified field and order."""
    from globscope import paraview_launch as pl

    path = tmp_path / "s.py"
    path.write_text(HOOK + "import os\n" + ENGINES_SCRIPT)
    r = pl.run_script("pvpython", path, [FIELDS / f"{name}.vti"], display=False, check=False, timeout=300)
    res = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res, (r.stdout + r.stderr)[-3000:]
    ttk, ours = res[0]["ttk"], res[0]["globscope"]
    assert ttk["engine"] == "ttk" and ours["engine"] == "globscope"
    for tag in ("input", "simplified"):
        t, o = ttk[tag], ours[tag]
        for port in ("nodes", "arcs", "seg", "diagram"):  # the layout: every array name, on the same side
            assert sorted(t[port]) == sorted(o[port]), (tag, port)
        tn, ta, ts, tspan = _by_vertex(t)
        on, oa, os_, ospan = _by_vertex(o)
        assert tn == on, tag  # nodes: critical type, region size and span, by vertex
        assert ta == oa, tag  # arcs (down vertex, up vertex): region size
        assert ts == os_, tag  # every vertex's arc
        keys = sorted(tspan)  # TTK measures spans between float32 coordinates
        assert np.allclose([tspan[k] for k in keys], [ospan[k] for k in keys], rtol=0, atol=1e-6), tag
        assert t["seg"]["point/RegionType"] == o["seg"]["point/RegionType"], tag
        assert np.allclose(t["seg"]["point/RegionSpan"], o["seg"]["point/RegionSpan"], atol=1e-6), tag
        for d in (t["diagram"], o["diagram"]):  # TTK's diagram: one diagonal, IsFinite 0 on it
            diag = [i for i, p in enumerate(d["cell/PairIdentifier"]) if p == -1]
            assert len(diag) == 1 and d["cell/IsFinite"][diag[0]] == 0 and d["cell/PairType"][diag[0]] == -1

        def pairs(d):
            v = d["point/ttkVertexScalarField"]
            ids = d["cell/PairIdentifier"]
            # TTK 1.1's diagram goes through a Threshold: find each pair's points by its cell order
            return sorted((v[2 * k], v[2 * k + 1], d["cell/IsFinite"][k], round(d["cell/Persistence"][k], 9))
                          for k in range(len(ids)) if ids[k] != -1)

        assert pairs(t["diagram"]) == pairs(o["diagram"]), tag
    ts, os_ = ttk["simplified"]["field"], ours["simplified"]["field"]
    assert ts["point/f"] == os_["point/f"] and ts["point/f_Order"] == os_["point/f_Order"]


@pytest.mark.parametrize("persistence", ["0.05", "0"])
@pytest.mark.parametrize("name", NAMES)
def test_topology_command_engines_agree(report, tmp_path, name, persistence):
    """``globscope topology --engine ttk`` and ``--engine globscope`` write the same files."""
    from globscope.cli import main

    out = {}
    for engine in ("ttk", "globscope"):
        out[engine] = tmp_path / engine
        assert main(["topology", str(FIELDS / f"{name}.vti"), "--array", "f", "--persistence", persistence,
                     "--engine", engine, "--out", str(out[engine])]) == 0
    s = {e: json.loads((out[e] / "topology.json").read_text()) for e in out}
    assert s["ttk"]["engine"]["name"] == "ttk" and s["globscope"]["engine"] == {"name": "globscope"}
    for e in s:
        s[e].pop("engine"), s[e].pop("seconds"), s[e].pop("input")
    assert s["ttk"] == s["globscope"]
    for f in s["ttk"]["files"]:
        assert (out["ttk"] / f).read_bytes() == (out["globscope"] / f).read_bytes(), f


def test_state_built_with_ttk_renders_and_names_ttk_proxies(report, bundle, tmp_path, pv_cache, monkeypatch):
    from png_stats import png_stats

    from globscope import paraview_launch as pl

    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    pvsm = pl.save_state(bundle, tmp_path / "ttk.pvsm")
    text = pvsm.read_text()
    merge_tree = report["ttk"]["merge_tree_proxy"]
    assert f'type="{merge_tree}"' in text and 'type="ttkTopologicalSimplificationByPersistence"' in text
    assert "TTKMerge" not in text and "GlobscopeMergeTree" not in text
    png = pl.render(bundle, tmp_path / "ttk.png", size=(640, 400), state=pvsm)
    (w, h), spread, colours = png_stats(png)
    assert (w, h) == (640, 400) and spread > 10 and colours > 20


def test_ttk_state_where_ttk_is_absent_says_so(report, bundle, tmp_path, pv_cache, monkeypatch):
    from globscope import paraview_launch as pl
    from globscope.errors import GlobscopeError

    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    pvsm = pl.save_state(bundle, tmp_path / "ttk.pvsm")
    monkeypatch.delenv("PV_PLUGIN_PATH", raising=False)
    with pytest.raises(GlobscopeError, match="native TTK"):
        pl.render(bundle, tmp_path / "no-ttk.png", size=(320, 200), state=pvsm)
    assert not (tmp_path / "no-ttk.png").exists()
