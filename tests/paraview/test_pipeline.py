"""The whole pipeline in pvpython on a tiny zoo: reader → manifold → loss landscape → topology,
basins, projected models; outputs fetched and checked."""

import pytest
from conftest import HOOK, PLUGIN, needs_paraview

pytestmark = [pytest.mark.paraview, needs_paraview]

SCRIPT = HOOK + f"""
import json, sys
from paraview.simple import *
from paraview import servermanager as sm
LoadPlugin({PLUGIN!r}, remote=False)
from python_filters import ttk as routing
zoo = sys.argv[1]

def arrays(obj, kind="point"):
    a = obj.GetPointData() if kind == "point" else obj.GetCellData()
    return sorted(a.GetArrayName(i) for i in range(a.GetNumberOfArrays()))

reader = routing.create("GlobscopeCheckpointSetReader", group="sources", FileName=zoo)
reader.UpdatePipeline()
reader.UpdatePropertyInformation()
out = {{"variants": list(reader.GetProperty("Variants")), "n_params": reader.GetProperty("ParameterCount")[0]}}
man = routing.create("GlobscopeManifold", [reader], Method=1)  # pca
pts = sm.Fetch(man)
out["n_points"], out["n_lines"], out["model_arrays"] = pts.GetNumberOfPoints(), pts.GetNumberOfLines(), arrays(pts)
land = routing.create("GlobscopeLossLandscape", [man], Resolution=10, Margin=0.2)
img = sm.Fetch(land)
out["dims"], out["land_arrays"] = list(img.GetDimensions()), arrays(img)
diag = routing.persistence_diagram(land, "log_loss")
d = sm.Fetch(diag)
out["diagram_cells"], out["diagram_cell_arrays"] = d.GetNumberOfCells(), arrays(d, "cell")
out["diagram_point_arrays"] = arrays(d)
tree = routing.merge_tree(land, "log_loss")
tree.UpdatePipeline()
nodes, arcs, seg = (sm.Fetch(tree, idx=i) for i in range(3))
out["nodes"], out["node_arrays"] = nodes.GetNumberOfPoints(), arrays(nodes)
out["arcs"], out["arc_arrays"] = arcs.GetNumberOfCells(), arrays(arcs, "cell")
out["arc_point_arrays"] = arrays(arcs)
out["seg_arrays"] = arrays(seg)
simp = routing.simplification(land, "log_loss", 0.5, False)
s = sm.Fetch(simp)
out["simp_arrays"] = arrays(s)
basins = routing.create("GlobscopeBasins", [man])
basins.Segmentation = OutputPort(tree, 2)
b = sm.Fetch(basins)
seg_ids = b.GetPointData().GetArray("SegmentationId")
out["basin_ids"] = [int(seg_ids.GetValue(i)) for i in range(seg_ids.GetNumberOfTuples())]
proj = routing.create("GlobscopeProjectModels", [man], CheckpointSet=zoo)
proj.Landscape = land
p = sm.Fetch(proj)
out["proj_arrays"], out["proj_points"] = arrays(p), p.GetNumberOfPoints()
# an unrelated change upstream-free: re-executing the landscape with the same settings reuses it
land.Margin = 0.2
land.UpdatePipeline()
algo = land.GetClientSideObject().GetPythonObject() if hasattr(land.GetClientSideObject(), "GetPythonObject") else None
out["engine"] = routing.detect()["engine"]
# the proxies' defaults, as a new user meets them
fresh = {{name: routing.create(name, [src]) for name, src in (("GlobscopeManifold", reader),
         ("GlobscopeLossLandscape", man), ("GlobscopeTopologicalSimplification", land))}}
out["defaults"] = {{n + "." + k: fresh[n].SMProxy.GetProperty(k).GetElement(0) for n, keys in (
    ("GlobscopeManifold", ("Method", "LatentDimension", "Seed", "Epochs")),
    ("GlobscopeLossLandscape", ("Resolution", "Margin", "Device", "BatchNormMode")),
    ("GlobscopeTopologicalSimplification", ("PersistenceThreshold", "ThresholdIsAbsolute"))) for k in keys}}
print("RESULT " + json.dumps(out))
"""


def test_whole_pipeline_in_pvpython(pv, digits_zoo):
    rc, out, err, res = pv("pvpython", SCRIPT, str(digits_zoo.root))
    assert rc == 0 and res, err[-4000:]
    r = res[0]
    assert r["variants"] == ["A", "B", "C"] and r["n_params"] == 2410
    assert r["n_points"] == 12 and r["n_lines"] == 3
    assert {"variant", "variant_id", "epoch", "reconstruction_error", "eval_loss"} <= set(r["model_arrays"])
    assert r["dims"] == [10, 10, 1]
    assert {"loss", "log_loss", "accuracy", "distance"} <= set(r["land_arrays"])
    # TTK's layouts, whichever engine ran (TTK 1.1's arrays, as the real plugin writes them)
    assert r["diagram_cell_arrays"] == ["Birth", "IsFinite", "PairIdentifier", "PairType", "Persistence"]
    assert r["diagram_point_arrays"] == ["Coordinates", "CriticalType", "ttkVertexScalarField"]
    assert r["diagram_cells"] >= 2  # the essential pair and the diagonal at least
    assert r["node_arrays"] == ["CriticalType", "NodeId", "RegionSize", "RegionSpan", "Scalar", "VertexId"]
    assert r["arc_arrays"] == ["RegionSize", "RegionSpan", "SegmentationId", "downNodeId", "upNodeId"]
    assert r["arc_point_arrays"] == ["Scalar", "ttkMaskScalarField"]
    assert r["arcs"] == r["nodes"] - 1  # a tree on one component
    assert {"SegmentationId", "RegionSize", "RegionSpan", "RegionType"} <= set(r["seg_arrays"])
    assert "log_loss_Order" in r["simp_arrays"]
    assert len(r["basin_ids"]) == 12 and all(0 <= i < r["arcs"] for i in r["basin_ids"])
    assert r["proj_points"] == 12 and {"field_loss", "field_log_loss"} <= set(r["proj_arrays"])
    assert r["engine"] in ("globscope", "ttk")
    # every proxy default is the settings' default (saved states store the choices' codes)
    from globscope.names import BN_MODES, DEVICES, MANIFOLD_METHODS
    from globscope.settings import FitSettings, LandscapeSettings, TopologySettings

    fit, land, topo = FitSettings(), LandscapeSettings(), TopologySettings()
    assert r["defaults"] == {
        "GlobscopeManifold.Method": MANIFOLD_METHODS.code(fit.method), "GlobscopeManifold.LatentDimension": fit.dim,
        "GlobscopeManifold.Seed": fit.seed, "GlobscopeManifold.Epochs": 0,
        "GlobscopeLossLandscape.Resolution": land.resolution, "GlobscopeLossLandscape.Margin": land.margin,
        "GlobscopeLossLandscape.Device": DEVICES.code(land.device),
        "GlobscopeLossLandscape.BatchNormMode": BN_MODES.code(land.bn),
        "GlobscopeTopologicalSimplification.PersistenceThreshold": topo.persistence,
        "GlobscopeTopologicalSimplification.ThresholdIsAbsolute": int(topo.absolute)}
