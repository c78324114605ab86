"""The landscape figure the state builds: a surface shaded with point normals, the merge tree's
arcs on the surface and its nodes coloured by critical type, a 3-D camera from which the terrain
hides no trajectory and no minimum, the picture of three views; 3-D landscapes too."""

import numpy as np
import pytest
from conftest import HOOK, needs_paraview
from png_stats import png_pixels

pytestmark = [pytest.mark.paraview, needs_paraview, pytest.mark.slow]

# builds the state on {bundle!r} and fetches what the tests look at; each test adds its RESULT line
BUILD = HOOK + """
import json
import numpy as np
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
from vtkmodules.util.numpy_support import vtk_to_numpy as v2n
from globscope.grid import Grid
view = gs.build_landscape({bundle!r}, (800, 500))

def data(name):
    return sm.Fetch(FindSource(name))

def points(name):
    return v2n(data(name).GetPoints().GetData()).astype(float)

def array(name, a):
    return v2n(data(name).GetPointData().GetArray(a))

simplified = data("Simplified log_loss")
grid = Grid.from_extent(simplified.GetOrigin(), simplified.GetSpacing(), simplified.GetExtent())
field = grid.to_field(v2n(simplified.GetPointData().GetArray("log_loss")))
scale = FindSource("Loss surface").ScaleFactor
"""


def _build(pv, bundle, tail):
    rc, out, err, res = pv("pvbatch", BUILD.format(bundle=str(bundle)) + tail, display=None)
    assert rc == 0 and res, err[-3000:]
    return res[0]


def test_the_surface_is_shaded_with_point_normals(bundle, pv):
    """The shown surface carries a point normal per vertex (smooth shading, not the cells' facets),
    facing up, and is what the 3-D view and the map show."""
    r = _build(pv, bundle, """
s = data("Shaded surface")
n = s.GetPointData().GetNormals()
shown = [GetDisplayProperties(FindSource("Shaded surface"), v).Visibility for v in (view, FindView(gs.MAP_VIEW))]
print("RESULT " + json.dumps({"normals": n.GetNumberOfTuples() if n else 0, "points": s.GetNumberOfPoints(),
      "cell_normals": s.GetCellData().GetNormals() is not None,
      "up": float(v2n(n)[:, 2].min()) if n else None, "shown": shown}))
""")
    assert r["normals"] == r["points"] > 0 and not r["cell_normals"]
    assert r["up"] > 0  # a height field: every normal points up
    assert r["shown"] == [1, 1]


def test_tree_arcs_lie_on_the_surface(bundle, pv):
    """Every point of every arc is at the warped field's height there (the simplified field, bilinear
    as the image interpolates, times the warp's scale) plus the markers' one lift; arcs are
    polylines along the field from node to node, not straight segments."""
    r = _build(pv, bundle, """
arcs = data("Merge tree arcs")
xyz = points("Merge tree arcs")
lift = xyz[:, 2] - scale * grid.interpolate(field, xyz[:, :2])
nodes = points("Merge tree nodes")
lines = [[arcs.GetCell(c).GetPointId(k) for k in range(arcs.GetCell(c).GetNumberOfPoints())]
         for c in range(arcs.GetNumberOfCells())]
ends = [float(np.abs(nodes - xyz[i]).sum(1).min()) for line in lines for i in (line[0], line[-1])]
print("RESULT " + json.dumps({"lift": [float(lift.min()), float(lift.max())],
      "node_lift": float((nodes[:, 2] - scale * array("Merge tree nodes", "Scalar")).mean()),
      "lengths": [len(line) for line in lines], "ends": max(ends),
      "tree_arcs": sm.Fetch(FindSource("Merge tree"), idx=1).GetNumberOfCells()}))
""")
    tol = 1e-3  # float32 points
    lo, hi = r["lift"]
    assert hi - lo < tol and lo > 10 * tol, r["lift"]  # one small positive lift for every point
    assert abs(lo - r["node_lift"]) < tol  # the nodes' lift: the arcs end on them
    assert len(r["lengths"]) == r["tree_arcs"] > 0
    assert min(r["lengths"]) > 2 and r["ends"] < tol, r  # polylines from node to node


def test_tree_nodes_are_coloured_by_critical_type(bundle, pv):
    """The nodes (sphere glyphs) are coloured through a categorical table on CriticalType whose
    annotations name exactly the types in the tree, each its own colour, with a legend."""
    r = _build(pv, bundle, """
lut = GetColorTransferFunction("CriticalType")
d = GetDisplayProperties(FindSource("Critical points"), view)
print("RESULT " + json.dumps({"categorical": lut.InterpretValuesAsCategories, "colour": list(d.ColorArrayName),
      "annotations": list(lut.Annotations), "colours": list(lut.IndexedColors),
      "types": sorted(set(array("Merge tree nodes", "CriticalType").tolist())),
      "legend": GetScalarBar(lut, view).Visibility}))
""")
    assert r["categorical"] == 1 and r["colour"] == ["POINTS", "CriticalType"] and r["legend"] == 1
    names = dict(zip(r["annotations"][::2], r["annotations"][1::2]))
    assert sorted(int(v) for v in names) == r["types"] and {0, 3} <= set(r["types"])
    assert names["0"] == "minimum" and names["3"].startswith("root")
    colours = np.reshape(r["colours"], (-1, 3))
    assert len(colours) == len(names) and len(np.unique(colours, axis=0)) == len(names)


def test_the_camera_shows_every_trajectory_and_minimum(bundle, pv):
    """From the 3-D view's camera, no model point and no minimum is hidden by the terrain (the
    straight line from its centre to the camera, sampled densely, never passes deeper under the
    surface than a quarter of the markers' lift: the top of its sphere shows) and all lie in the
    picture."""
    r = _build(pv, bundle, """
camera = np.array(view.CameraPosition)
kinds = array("Merge tree nodes", "CriticalType")
nodes = points("Merge tree nodes")
targets = np.concatenate([points("Models"), nodes[kinds == 0]])
tol = gs.HIDDEN_DEPTH * float(np.mean(nodes[:, 2] - scale * array("Merge tree nodes", "Scalar")))
heights = scale * field
t = np.linspace(0.0, 1.0, 20001)[1:]
hidden = []
for p in targets:
    ray = p + t[:, None] * (camera - p)
    z = grid.interpolate(heights, ray[:, :2], outside="nan")
    hidden.append(bool(np.any(ray[:, 2] < z - tol)))
w, h = view.ViewSize
m = view.GetActiveCamera().GetCompositeProjectionTransformMatrix(w / h, -1, 1)
M = np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])
ndc = np.c_[targets, np.ones(len(targets))] @ M.T
ndc = ndc[:, :2] / ndc[:, 3:]
print("RESULT " + json.dumps({"hidden": sum(hidden), "targets": len(targets),
      "inside": bool(np.all(np.abs(ndc) < 1.0))}))
""")
    assert r["targets"] > 0 and r["hidden"] == 0 and r["inside"], r


def test_the_picture_holds_the_3d_view_the_map_and_the_diagram(bundle, tmp_path, pv_cache, monkeypatch):
    """`globscope render` saves the whole layout at the size asked: the 3-D view (left), the map
    (right, top) and the persistence diagram (right, bottom) each draw something."""
    from globscope import paraview_launch as pl

    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    a = png_pixels(pl.render(bundle, tmp_path / "landscape.png", size=(900, 560)))
    assert a.shape == (560, 900, 3)
    split, column = int(0.58 * 900), int(0.62 * 560)
    for part in (a[:, :split], a[:column, split:], a[column:, split:]):
        assert part.std(axis=(0, 1)).mean() > 10 and len(np.unique(part.reshape(-1, 3), axis=0)) > 20


@pytest.fixture(scope="module")
def bundle3d(digits_zoo, tmp_path_factory):
    """A bundle on a 3-D latent space: PCA d = 3, an 8 x 8 x 8 field."""
    from globscope import stages
    from globscope.bundle import write_model_points
    from globscope.settings import FitSettings, LandscapeSettings

    root = tmp_path_factory.mktemp("bundle3d")
    models = stages.load_models(digits_zoo)
    man = stages.fit(models, FitSettings(method="pca", dim=3), out=root / "manifold.pt")
    Z, errors = stages.project(man, models)
    write_model_points(root / "models.vtp", Z, digits_zoo, errors)
    stages.landscape(root / "manifold.pt", root, LandscapeSettings(resolution=8, margin=0.2))
    return root


def test_a_3d_landscape_builds_and_renders(bundle3d, tmp_path, pv_cache, monkeypatch, pv):
    """A 3-D latent space: isosurfaces, the tree's arcs along the field in 3-D, nothing warped;
    the render holds its three views."""
    from globscope import paraview_launch as pl

    rc, out, err, res = pv("pvbatch", HOOK + f"""
import json
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
view = gs.build_landscape({str(bundle3d)!r}, (800, 500))
arcs = sm.Fetch(FindSource("Merge tree arc paths"))
shown = sorted(k[0] for k, v in GetSources().items() if GetDisplayProperties(v, view).Visibility)
print("RESULT " + json.dumps({{"arcs": arcs.GetNumberOfCells(), "points": arcs.GetNumberOfPoints(), "shown": shown}}))
""", display=None)
    assert rc == 0 and res, err[-3000:]
    r = res[0]
    assert r["arcs"] > 0 and r["points"] > 2 * r["arcs"], r
    assert {"Loss isosurfaces", "Critical points", "Merge tree arc tubes", "Trajectories"} <= set(r["shown"])
    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    a = png_pixels(pl.render(bundle3d, tmp_path / "landscape3d.png", size=(640, 400)))
    assert a.shape == (400, 640, 3) and a.std(axis=(0, 1)).mean() > 10
