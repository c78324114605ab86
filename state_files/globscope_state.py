"""Globscope's ParaView side: load the plugin (and TTK when present), build or load the landscape
state on a bundle, render it, save it, report on the installation.

Import it from pvpython/pvbatch/the GUI's Python shell, or run it::

    pvbatch globscope_state.py render --bundle BUNDLE --out FILE.png [--state S.pvsm|S.py] [--size W H]
    pvbatch globscope_state.py save   --bundle BUNDLE --out BUNDLE/globscope.pvsm
    pvpython globscope_state.py doctor

(``globscope render`` / ``globscope paraview`` / ``globscope doctor`` do that for you, with the
right environment and ``xvfb-run`` when there is no display.)

The landscape state: ``landscape.vti``'s ``log_loss`` simplified by persistence and warped into a
surface coloured by log loss with a legend; the model points and training trajectories
(``models.vtp``) on the surface coloured by variant; the join tree's nodes and arcs; a second view
with the persistence diagram. Topology uses native TTK when its plugin loads, else Globscope's
filters (:mod:`python_filters.ttk`).
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _plugin_dir():
    """Source checkout: ROOT/plugin; installed by CMake: ROOT itself holds the entry file."""
    if os.environ.get("GLOBSCOPE_PLUGIN_DIR"):
        return os.environ["GLOBSCOPE_PLUGIN_DIR"]
    src = os.path.join(ROOT, "plugin")
    return src if os.path.isfile(os.path.join(src, "GlobscopePlugin.py")) else ROOT


# The ParaView 5.11 hook must be in place before ParaView's plugin loader is imported.
sys.path.insert(0, os.path.join(_plugin_dir(), "compat"))
import globscope_pv_compat  # noqa: E402

globscope_pv_compat.install()

from paraview import simple  # noqa: E402

LANDSCAPE_VIEW = "Landscape"
DIAGRAM_VIEW = "Persistence Diagram"
SIMPLIFY = 0.02  # persistence threshold of the shown field, a fraction of its range
_loaded = {}


def load_plugins(ttk: bool = True) -> dict:
    """Load Globscope's plugin (once) and, with ``ttk``, decide the topology engine.

    Returns the TTK report of :func:`python_filters.ttk.detect` (``{}`` without ``ttk``).
    """
    from paraview import servermanager as sm

    if "globscope" not in _loaded:
        pxm = sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()
        if pxm is None or pxm.GetPrototypeProxy("filters", "GlobscopeMergeTree") is None:
            simple.LoadPlugin(os.path.join(_plugin_dir(), "GlobscopePlugin.py"), remote=False)
        _loaded["globscope"] = True
    if ROOT not in sys.path and os.path.isdir(os.path.join(ROOT, "python_filters")):
        sys.path.insert(0, ROOT)
    if not ttk:
        return {}
    from python_filters import ttk as routing

    return routing.detect()


def _warp(source, array, scale, name):
    w = simple.WarpByScalar(registrationName=name, Input=source)
    w.Scalars = ["POINTS", array]
    w.ScaleFactor = scale
    w.UseNormal = 1
    w.Normal = [0.0, 0.0, 1.0]
    return w


def _finite_range(source, array):
    source.UpdatePipeline()
    lo, hi = source.PointData[array].GetRange()
    return float(lo), float(hi)


def build_landscape(bundle, size=(1600, 1000)):
    """Build the landscape pipeline and views on ``bundle``; returns the landscape view."""
    from python_filters import ttk as routing

    load_plugins()
    bundle = os.path.abspath(bundle)
    vti = os.path.join(bundle, "landscape.vti")
    if not os.path.isfile(vti):
        raise FileNotFoundError(f"{vti}: the bundle has no landscape (run `globscope landscape` first)")
    land = simple.XMLImageDataReader(registrationName="landscape.vti", FileName=[vti])
    land.UpdatePipeline()
    dims = land.GetDataInformation().GetExtent()
    is3d = dims[5] > dims[4]
    b = land.GetDataInformation().GetBounds()
    lo, hi = _finite_range(land, "log_loss")
    scale = 0.6 * max(b[1] - b[0], b[3] - b[2]) / max(hi - lo, 1e-12)

    simp = routing.simplification(land, "log_loss", SIMPLIFY, name="Simplified log loss")
    tree = routing.merge_tree(simp, "log_loss", name="Merge tree")
    diagram = routing.persistence_diagram(land, "log_loss", name="Persistence diagram")

    view = simple.CreateView("RenderView")
    simple.RenameView(LANDSCAPE_VIEW, view)
    layout = simple.CreateLayout("Globscope")
    simple.AssignViewToLayout(view=view, layout=layout, hint=0)
    view.ViewSize = list(size)
    view.OrientationAxesVisibility = 0
    view.Background = [1.0, 1.0, 1.0]
    if hasattr(view, "UseColorPaletteForBackground"):
        view.UseColorPaletteForBackground = 0
    lut = simple.GetColorTransferFunction("log_loss")
    lut.ApplyPreset("Viridis (matplotlib)", True)
    lut.RescaleTransferFunction(lo, hi)

    if is3d:
        surf = simple.Contour(registrationName="Loss isosurfaces", Input=simp)
        surf.ContourBy = ["POINTS", "log_loss"]
        surf.ComputeScalars = 1
        surf.Isosurfaces = [lo + (hi - lo) * q for q in (0.1, 0.25, 0.45)]
        sd = simple.Show(surf, view)
        sd.Opacity = 0.5
        scale = 0.0
        lifted_models = None
    else:
        surface = simple.ExtractSurface(registrationName="Surface", Input=simp)
        surf = _warp(surface, "log_loss", scale, "Loss surface")
        sd = simple.Show(surf, view)
    simple.ColorBy(sd, ("POINTS", "log_loss"))
    sd.LookupTable = lut
    sd.SetScalarBarVisibility(view, True)
    bar = simple.GetScalarBar(lut, view)
    bar.Title = "log10 loss"
    bar.ComponentTitle = ""
    bar.TitleColor = bar.LabelColor = [0.1, 0.1, 0.1]

    models_file = os.path.join(bundle, "models.vtp")
    if os.path.isfile(models_file):
        models = simple.XMLPolyDataReader(registrationName="models.vtp", FileName=[models_file])
        models.UpdatePipeline()
        # vtkProbeFilter (5.11) crashes passing string arrays: keep the numeric ones only
        numeric = [k for k in models.PointData.keys() if models.PointData[k].GetDataType() != 13 and k != "variant"]
        kept = simple.PassArrays(registrationName="Model arrays", Input=models, PointDataArrays=numeric,
                                 FieldDataArrays=[])
        on_field = simple.ResampleWithDataset(registrationName="Models on field", SourceDataArrays=land,
                                              DestinationMesh=kept)
        on_field.PassPointArrays = 1
        on_field.PassCellArrays = 1
        lifted_models = _warp(on_field, "log_loss", scale, "Models") if not is3d else on_field
        md = simple.Show(lifted_models, view)
        simple.ColorBy(md, ("POINTS", "variant_id"))
        vlut = simple.GetColorTransferFunction("variant_id")
        vlut.ApplyPreset("Set1", True) if vlut.ApplyPreset("Set1", True) else None
        vlut.InterpretValuesAsCategories = 1
        vlut.AnnotationsInitialized = 1
        md.RenderPointsAsSpheres = 1
        md.RenderLinesAsTubes = 1
        md.PointSize = 12.0
        md.LineWidth = 4.0
        md.SetScalarBarVisibility(view, False)

    nodes = simple.OutputPort(tree, 0)
    arcs = simple.OutputPort(tree, 1)
    if not is3d:
        nodes = _warp(nodes, "Scalar", scale, "Merge tree nodes")
        arcs = _warp(arcs, "Scalar", scale, "Merge tree arcs")
    nd = simple.Show(nodes, view)
    simple.ColorBy(nd, ("POINTS", None))
    nd.AmbientColor = nd.DiffuseColor = [0.9, 0.1, 0.1]
    nd.RenderPointsAsSpheres = 1
    nd.PointSize = 16.0
    ad = simple.Show(arcs, view)
    simple.ColorBy(ad, ("POINTS", None))
    ad.AmbientColor = ad.DiffuseColor = [0.95, 0.95, 0.95]
    ad.RenderLinesAsTubes = 1
    ad.LineWidth = 5.0

    view.ResetCamera()
    cam = view.GetActiveCamera()
    cam.Elevation(-55.0)
    cam.Azimuth(20.0)
    view.ResetCamera()
    cam.Dolly(1.25)

    dview = simple.CreateView("RenderView")
    dview.InteractionMode = "2D"
    dview.OrientationAxesVisibility = 0
    dview.Background = [1.0, 1.0, 1.0]
    if hasattr(dview, "UseColorPaletteForBackground"):
        dview.UseColorPaletteForBackground = 0
    dd = simple.Show(diagram, dview)
    simple.ColorBy(dd, ("CELLS", "Persistence"))
    dd.RenderPointsAsSpheres = 1
    dd.PointSize = 8.0
    dd.LineWidth = 2.0
    dview.AxesGrid.Visibility = 1
    dview.AxesGrid.XTitle = "birth (log10 loss)"
    dview.AxesGrid.YTitle = "death"
    cell = layout.SplitHorizontal(0, 0.7)
    layout.AssignView(cell + 1, dview)
    simple.RenameView(DIAGRAM_VIEW, dview)
    dview.ResetCamera()
    simple.SetActiveView(view)
    simple.SetActiveSource(surf)
    return view


def load_state(path, bundle=None):
    """Load a ``.pvsm`` (data files remapped into ``bundle``) or a Python state (``.py``, run with
    ``GLOBSCOPE_BUNDLE`` set) after the plugins; returns the landscape view."""
    load_plugins()
    path = os.path.abspath(path)
    if path.endswith(".py"):
        if bundle:
            os.environ["GLOBSCOPE_BUNDLE"] = os.path.abspath(bundle)
        g = {"__file__": path, "__name__": "__globscope_state__"}
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), g)
    elif bundle:
        simple.LoadState(path, data_directory=os.path.abspath(bundle), restrict_to_data_directory=False)
    else:
        simple.LoadState(path)
    return landscape_view()


def landscape_view():
    """The landscape view of a built or loaded state (the largest render view showing data)."""
    v = simple.FindView(LANDSCAPE_VIEW) if hasattr(simple, "FindView") else None
    if v is not None:
        return v
    views = simple.GetRenderViews()
    if not views:
        raise RuntimeError("the state has no render view")
    return views[0]


def render(bundle, out, state=None, size=(1600, 1000)):
    view = load_state(state, bundle) if state else build_landscape(bundle, size)
    view.ViewSize = list(size)
    simple.Render(view)
    simple.SaveScreenshot(out, view, ImageResolution=list(size), TransparentBackground=0)
    return out


def save(bundle, out):
    build_landscape(bundle)
    simple.SaveState(out)
    return out


def doctor() -> dict:
    from paraview import servermanager as sm

    v = simple.GetParaViewVersion()
    rep = {"paraview": f"{v.major}.{v.minor}",
           "paraview_full": sm.vtkSMProxyManager.GetParaViewSourceVersion(),
           "python": sys.version.split()[0],
           "compat_hook": "active" if globscope_pv_compat.installed() or hasattr(__import__("inspect"), "getargspec")
           else "not needed"}
    try:
        ttk = load_plugins()
        rep["plugin_loads"] = True
    except Exception as e:  # noqa: BLE001
        rep["plugin_loads"] = False
        rep["plugin_error"] = f"{type(e).__name__}: {e}"
        ttk = {}
        try:
            from python_filters import ttk as routing

            ttk = routing.detect()
        except Exception as e2:  # noqa: BLE001
            ttk = {"present": False, "error": str(e2)}
    rep["ttk"] = {k: ttk.get(k) for k in ("present", "merge_tree_proxy", "proxies", "error")}
    rep["engine"] = ttk.get("engine", "globscope")
    return rep


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="globscope_state.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--bundle", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--state")
    r.add_argument("--size", nargs=2, type=int, default=(1600, 1000))
    s = sub.add_parser("save")
    s.add_argument("--bundle", required=True)
    s.add_argument("--out", required=True)
    sub.add_parser("doctor")
    a = p.parse_args(argv)
    if a.cmd == "render":
        print(render(a.bundle, a.out, a.state, tuple(a.size)))
    elif a.cmd == "save":
        print(save(a.bundle, a.out))
    else:
        print("GLOBSCOPE-DOCTOR " + json.dumps(doctor()), flush=True)


if __name__ == "__main__":
    main()
