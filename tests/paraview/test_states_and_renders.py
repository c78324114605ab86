"""States (.pvsm with data_directory remapping, Python state), pvbatch renders and the GUI."""

import shutil
import xml.etree.ElementTree as ET

import pytest
from conftest import HOOK, needs_paraview
from png_stats import png_stats

pytestmark = [pytest.mark.paraview, needs_paraview, pytest.mark.slow]


def test_render_png_is_not_blank(bundle, tmp_path, pv_cache, monkeypatch):
    from globscope import paraview_launch as pl

    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    out = pl.render(bundle, tmp_path / "landscape.png", size=(640, 400))
    (w, h), spread, colours = png_stats(out)
    assert (w, h) == (640, 400)
    assert spread > 10 and colours > 20, (spread, colours)


def test_pvsm_saved_and_reloaded_on_another_bundle(bundle, tmp_path, pv):
    from globscope import paraview_launch as pl

    pvsm = pl.save_state(bundle, tmp_path / "globscope.pvsm")
    assert pvsm.is_file() and ("GlobscopeMergeTree" in pvsm.read_text() or "type=\"ttk" in pvsm.read_text())
    # the state says which files it reads, and how to open it on a copy
    head = pvsm.read_text().split("-->")[0]
    assert str(bundle / "landscape.vti") in head and str(bundle / "models.vtp") in head and "state option" in head
    ET.parse(pvsm)  # still well-formed XML
    moved = tmp_path / "elsewhere"
    shutil.copytree(bundle, moved, ignore=shutil.ignore_patterns(".landscape-cache"))
    script = HOOK + f"""
import sys, json
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
view = gs.load_state({str(pvsm)!r}, {str(moved)!r})
r = FindSource("landscape.vti")
layout = GetLayoutByName("Globscope")
cells = [layout.GetViewLocation(FindView(n)) for n in (gs.LANDSCAPE_VIEW, gs.MAP_VIEW, gs.DIAGRAM_VIEW)]
print("RESULT " + json.dumps({{"file": r.FileName[0], "views": len(GetRenderViews()), "cells": cells,
      "arcs": sm.Fetch(FindSource("Merge tree arcs")).GetNumberOfCells(),
      "pairs": sm.Fetch(FindSource("Kept pairs")).GetNumberOfCells()}}))
"""
    rc, out, err, res = pv("pvbatch", script, display=None)
    assert rc == 0 and res, err[-3000:]
    assert res[0]["file"].startswith(str(moved)) and res[0]["views"] == 3
    # the 3-D view, the map and the diagram sit in the "Globscope" layout (the GUI shows them side
    # by side), in different cells
    cells = res[0]["cells"]
    assert min(cells) >= 0 and len(set(cells)) == 3, cells
    # the reloaded pipeline runs: the tree's arcs (a programmable filter) and the diagram's pairs
    assert res[0]["arcs"] > 0 and res[0]["pairs"] > 0, res[0]


def test_models_and_merge_tree_sit_on_the_surface(bundle, pv):
    """Models and merge-tree nodes are warped like the surface (z = scale * value) plus a small lift;
    the model points are coloured by variant through a categorical table annotated with the names."""

    script = HOOK + f"""
import sys, json
import globscope_state as gs
from paraview.simple import *
from paraview import servermanager as sm
from vtkmodules.util.numpy_support import vtk_to_numpy as v2n
gs.build_landscape({str(bundle)!r}, (400, 300))
scale = FindSource("Loss surface").ScaleFactor
def lift(name, array):
    d = sm.Fetch(FindSource(name))
    z = v2n(d.GetPoints().GetData())[:, 2] - scale * v2n(d.GetPointData().GetArray(array))
    return [float(z.min()), float(z.max())]
lut = GetColorTransferFunction("variant_id")
names = sm.Fetch(FindSource("models.vtp")).GetFieldData().GetAbstractArray("runs")
print("RESULT " + json.dumps({{"surface": lift("Loss surface", "log_loss"), "models": lift("Models", "log_loss"),
      "nodes": lift("Merge tree nodes", "Scalar"), "categorical": lut.InterpretValuesAsCategories,
      "annotations": list(lut.Annotations)[1::2],
      "runs": [names.GetValue(i) for i in range(names.GetNumberOfValues())] if names else None,
      "shown": sorted(k[0] for k, v in GetSources().items()
                      if GetDisplayProperties(v, GetActiveView()).Visibility)}}))
"""
    rc, out, err, res = pv("pvbatch", script, display=None)
    assert rc == 0 and res, err[-3000:]
    r = res[0]
    tol = 1e-3  # float32 points
    assert abs(r["surface"][0]) < tol and abs(r["surface"][1]) < tol, r["surface"]
    for key in ("models", "nodes"):
        lo, hi = r[key]
        assert lo > 10 * tol and hi - lo < tol, (key, r[key])  # one small positive lift for every point
    assert r["categorical"] == 1
    assert r["runs"] and sorted(r["annotations"]) == sorted(r["runs"])
    shown = {"Shaded surface", "Model points", "Trajectories", "Critical points", "Merge tree arc tubes"}
    assert shown <= set(r["shown"])


def test_python_state_renders(bundle, tmp_path, pv_cache, monkeypatch):
    from globscope import paraview_launch as pl

    monkeypatch.setenv("GLOBSCOPE_CACHE", str(pv_cache))
    out = pl.render(bundle, tmp_path / "py.png", state=pl.state_script("landscape_state.py"), size=(400, 300))
    assert png_stats(out)[1] > 10


def test_doctor_reports(monkeypatch):
    from globscope import paraview_launch as pl

    rep = pl.doctor()
    assert rep["paraview"].startswith("5.") and rep["plugin_loads"], rep
    assert rep["engine"] in ("ttk", "globscope")
    assert rep["engine"] == ("ttk" if rep["ttk"]["present"] else "globscope")
    assert "available" in rep["cuda"]
