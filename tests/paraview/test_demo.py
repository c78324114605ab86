"""`globscope demo` end to end, as `make demo` runs it: the paper's checks on the embedded zoo,
a rendered PNG, and a second run that reuses every stage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.paraview


def _run(out, command="demo", *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "globscope", command, *map(str, args)] + (["--out", str(out)] if out else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, _run(out)


def test_demo_reproduces_the_papers_checks(demo):
    out, stdout = demo
    s = json.loads((out / "summary.json").read_text())
    mse = s["reconstruction_mse"]
    assert set(mse) == {"autoencoder", "pca", "kernel-pca", "umap"}
    assert min(mse, key=mse.get) == "autoencoder"
    assert "<- lowest" in stdout and "autoencoder" in stdout
    # seven variants trained from seven seeds: seven basins, each final model in its own
    assert s["n_variants"] == 7 and s["n_basins"] == 7
    assert s["n_basins_of_final_models"] == 7
    assert all(b["is_leaf_basin"] for b in s["final_model_basins"].values())
    for f in ["zoo/manifest.json", "manifold.pt", "models.vtp", "reconstruction.csv", "landscape.vti",
              "landscape.json", "topology/topology.vti", "topology/topology.vtu", "globscope.pvsm",
              "manifolds/pca.pt", "manifolds/umap.pt", "validation.json", "validation/report.md",
              "validation/connectivity.csv", "validation/curves.vtp", "validation/paths.vtp",
              "validation/connectivity_landscapes.png"]:
        assert (out / f).is_file(), f


def test_demo_validates_its_landscape(demo):
    """The short validation: curves from the hub G to A..F on all four manifolds, saddle paths;
    summary.json keeps the MAE per pair and manifold, the state draws the curves."""
    out, stdout = demo
    s = json.loads((out / "summary.json").read_text())
    mae = s["connectivity"]["mae"]
    assert sorted(mae) == [f"G-{v}" for v in "ABCDEF"]
    assert all(set(m) == {"autoencoder", "pca", "kernel-pca", "umap"} for m in mae.values())
    assert len(s["paths"]) == s["n_basins"] - 1  # one saddle path per join of two basins
    assert "median MAE" in stdout
    assert "GlobscopeValidationReader" in (out / "globscope.pvsm").read_text()


def test_state_and_picture_use_the_recorded_threshold(demo):
    """The state (and the picture rendered from it) simplifies at the threshold summary.json
    counts basins at: read from the bundle, not restated."""
    import xml.etree.ElementTree as ET

    from globscope.settings import TopologySettings

    out, _ = demo
    recorded = json.loads((out / "summary.json").read_text())["topology"]["settings"]
    assert recorded == TopologySettings().to_dict()  # the demo runs with the defaults
    values = {}
    for px in ET.parse(out / "globscope.pvsm").iter("Proxy"):
        if "Simplification" in px.get("type", ""):
            for prop in px.iter("Property"):
                if prop.get("name") in ("PersistenceThreshold", "ThresholdIsAbsolute"):
                    values[prop.get("name")] = float(next(prop.iter("Element")).get("value"))
    assert values == {"PersistenceThreshold": recorded["persistence"], "ThresholdIsAbsolute": recorded["absolute"]}


def test_demo_png_shows_a_landscape(demo):
    out, _ = demo
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    r = vtkPNGReader()
    r.SetFileName(str(out / "landscape.png"))
    r.Update()
    img = r.GetOutput()
    assert img.GetDimensions()[:2] == (1600, 1000)
    px = vtk_to_numpy(img.GetPointData().GetScalars())[:, :3].astype(float)
    assert px.std(axis=0).mean() > 10  # not blank
    assert len(np.unique(px[::97], axis=0)) > 100  # a colour map, not a flat fill


def test_second_run_reuses_every_stage(demo):
    out, _ = demo
    _run(out)
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert {"zoo", "manifold", "compare", "points", "landscape", "topology", "render"} <= set(stages)
    assert all(v["reused"] for v in stages.values()), {k: v["reused"] for k, v in stages.items()}


def test_a_manifold_refitted_in_place_invalidates_the_stages_after_it(demo):
    out, _ = demo
    _run(out / "manifold.pt", "fit", out / "zoo", "--epochs", "5")  # same path, other content
    _run(out)
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["zoo"]["reused"] and stages["manifold"]["reused"]
    assert not any(stages[k]["reused"] for k in ("compare", "points", "landscape", "topology", "render"))


def test_demo_state_uses_the_engine_paraview_has(demo):
    """With TTK loaded (CI points PV_PLUGIN_PATH at one when it can), the demo's state is built from
    native TTK's filters and names them by their XML types; without TTK, from Globscope's."""
    from globscope import paraview_launch as pl

    out, _ = demo
    rep = pl.doctor()
    pvsm = (out / "globscope.pvsm").read_text()
    if rep["engine"] == "ttk":
        assert f'type="{rep["ttk"]["merge_tree_proxy"]}"' in pvsm and "GlobscopeMergeTree" not in pvsm
    else:
        assert 'type="GlobscopeMergeTree"' in pvsm and 'type="ttk' not in pvsm
    assert (out / "landscape.png").stat().st_size > 10_000
