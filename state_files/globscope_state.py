"""Globscope's ParaView side: load the plugin (and TTK when present), build or load the landscape
state on a bundle, render it, save it, report on the installation.

Import it from pvpython/pvbatch/the GUI's Python shell, or run it::

    pvbatch globscope_state.py render --bundle BUNDLE --out FILE.png [--state S.pvsm|S.py] [--size W H]
    pvbatch globscope_state.py save   --bundle BUNDLE --out BUNDLE/globscope.pvsm
    pvpython globscope_state.py doctor
    pvpython globscope_state.py ttk-topology --field F.vti --array A --persistence P --absolute 0|1 --out O.npz

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

try:  # Globscope's folders and the ParaView 5.11 hook, before ParaView's plugin loader is imported
    import globscope_entry
except ImportError:
    raise ImportError("Globscope's entry helper is not importable: start ParaView with `globscope paraview` "
                      "or `globscope render`, or load the Globscope plugin first") from None
globscope_entry.setup()

import globscope_pv_compat  # noqa: E402
from paraview import simple  # noqa: E402

from globscope import names as N  # noqa: E402
from globscope.settings import RenderSettings  # noqa: E402
from globscope.stages import recorded_topology_settings  # noqa: E402

LANDSCAPE_VIEW = "Landscape"
ARRAY_TITLES = {N.LOG_LOSS: "log10 loss", N.LOSS: "loss", N.ACCURACY: "accuracy"}
DIAGRAM_VIEW = "Persistence Diagram"
_loaded = {}


def load_plugins(ttk: bool = True) -> dict:
    """Load Globscope's plugin (once) and, with ``ttk``, decide the topology engine.

    Returns the TTK report of :func:`python_filters.ttk.detect` (``{}`` without ``ttk``).
    """
    from paraview import servermanager as sm

    if "globscope" not in _loaded:
        pxm = sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()
        if pxm is None or pxm.GetPrototypeProxy("filters", "GlobscopeMergeTree") is None:
            simple.LoadPlugin(globscope_entry.PLUGIN_FILE, remote=False)
        _loaded["globscope"] = True
    if not ttk:
        return {}
    from python_filters import ttk as routing

    return routing.detect()


# Categorical colours for the variants: saturated hues that stand out on a viridis surface and on
# white (the merge tree is drawn in white/light grey).
VARIANT_COLOURS = [
    (0.894, 0.102, 0.110), (1.000, 0.498, 0.000), (0.902, 0.161, 0.541), (0.651, 0.337, 0.157),
    (0.094, 0.094, 0.094), (0.969, 0.506, 0.749), (0.000, 0.749, 1.000), (0.550, 0.000, 0.000),
    (0.600, 0.600, 0.000), (0.580, 0.404, 0.741),
]


def _warp(source, array, scale, name, offset=0.0):
    """Lift a 2-D data set (z = 0) to ``z = scale * array + offset``: the surface's own warp, with
    ``offset`` raising markers just above it."""
    if not offset:
        w = simple.WarpByScalar(registrationName=name, Input=source)
        w.Scalars = ["POINTS", array]
        w.ScaleFactor = scale
        w.UseNormal = 1
        w.Normal = [0.0, 0.0, 1.0]
        return w
    return _lift(source, f'"{array}"', scale, offset, name)


def _lift(source, expression, scale, offset, name):
    """``z = scale * expression + offset`` (a Calculator expression of the point arrays)."""
    c = simple.Calculator(registrationName=name, Input=source)
    c.AttributeType = "Point Data"
    c.CoordinateResults = 1
    c.Function = f"coordsX*iHat + coordsY*jHat + ({scale!r}*{expression} + {offset!r})*kHat"
    c.ResultArrayName = "lifted"
    return c


def _show_curves(bundle, view, array, scale, lift, extent):
    """The validation's mode-connectivity curves on the landscape of the bundle's manifold: tubes
    at the height of their real loss, coloured by it (when ``validation/curves.vtp`` exists)."""
    from globscope.manifolds import read_manifold_info
    from python_filters import ttk as routing

    path = os.path.join(bundle, "validation", "curves.vtp")
    if not os.path.isfile(path):
        return None
    method = read_manifold_info(os.path.join(bundle, "manifold.pt")).method
    curves = routing.create("GlobscopeValidationReader", group="sources", registration_name="curves.vtp",
                            FileName=path, Manifold=method)
    height = "log10(real_loss)" if array == N.LOG_LOSS else "real_loss"
    tubes = simple.Tube(registrationName="Curves", Input=_lift(curves, height, scale, lift, "Curves lifted"))
    tubes.Radius = 0.006 * extent
    tubes.NumberofSides = 10
    d = simple.Show(tubes, view)
    simple.ColorBy(d, ("POINTS", "real_loss"))
    lut = simple.GetColorTransferFunction("real_loss")
    lut.ApplyPreset("Inferno (matplotlib)", True)
    d.LookupTable = lut
    _legend(d, lut, view, "curve loss", (0.80, 0.52), 0.40)
    return tubes


def _finite_range(source, array):
    source.UpdatePipeline()
    lo, hi = source.PointData[array].GetRange()
    return float(lo), float(hi)


def _variant_names(models) -> dict:
    """``variant_id -> variant name`` from ``models.vtp`` (point arrays ``variant``/``variant_id``,
    else the ``runs`` field array in id order)."""
    from paraview import servermanager as sm

    names = {}
    try:
        data = sm.Fetch(models)
        pd, fd = data.GetPointData(), data.GetFieldData()
        ids, var = pd.GetArray("variant_id"), pd.GetAbstractArray("variant")
        if ids is not None and var is not None:
            for i in range(data.GetNumberOfPoints()):
                names.setdefault(int(ids.GetTuple1(i)), str(var.GetValue(i)))
        runs = fd.GetAbstractArray("runs")
        if not names and runs is not None:
            names = {i: str(runs.GetValue(i)) for i in range(runs.GetNumberOfValues())}
    except Exception:  # noqa: BLE001 - the legend then shows the ids
        pass
    return names


def _legend(display, lut, view, title, position, length):
    """The display's colour legend, titled and placed (fractions of the view)."""
    display.SetScalarBarVisibility(view, True)
    bar = simple.GetScalarBar(lut, view)
    bar.Title = title
    bar.ComponentTitle = ""
    bar.WindowLocation = "Any Location"
    bar.Orientation = "Vertical"
    bar.Position = list(position)
    bar.ScalarBarLength = length
    bar.TitleColor = bar.LabelColor = [0.1, 0.1, 0.1]
    bar.TitleFontSize = 18
    bar.LabelFontSize = 15


def _set_camera(view, bounds):
    """Whole surface framed (its bounding sphere), seen from the south-south-west 50 degrees above the
    latent plane, z up; set here rather than by the first Render()'s camera reset."""
    import math

    cx, cy, cz = ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
    radius = 0.5 * math.sqrt((bounds[1] - bounds[0]) ** 2 + (bounds[3] - bounds[2]) ** 2 + (bounds[5] - bounds[4]) ** 2)
    az, el = math.radians(-120.0), math.radians(50.0)
    d = radius / math.sin(math.radians(view.CameraViewAngle / 2.0))
    dx, dy, dz = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
    # screen-up direction (world z made orthogonal to the view direction): the camera moves down
    # it a little, which raises the surface (taller at the back) into the middle of the picture
    ux, uy, uz = -dz * dx, -dz * dy, 1.0 - dz * dz
    n = math.sqrt(ux * ux + uy * uy + uz * uz) or 1.0
    k = -0.12 * radius / n
    cx, cy, cz = cx + k * ux, cy + k * uy, cz + k * uz
    d /= 1.1
    view.CameraFocalPoint = [cx, cy, cz]
    view.CameraPosition = [cx + d * dx, cy + d * dy, cz + d * dz]
    view.CameraViewUp = [0.0, 0.0, 1.0]
    view.CameraParallelProjection = 0
    if hasattr(simple, "_DisableFirstRenderCameraReset"):  # keep this camera on the first Render()
        simple._DisableFirstRenderCameraReset()


def _show_models(path, colour, names, view, simp, array, scale, lift, extent, is3d, marked_role=None):
    """Model points (spheres) and training trajectories (tubes) on the surface, coloured by the
    categorical point array ``colour`` (``names``: its value -> legend name; default the variant
    names); points whose ``role`` is ``marked_role`` are drawn as cubes."""
    name = os.path.basename(path)
    models = simple.XMLPolyDataReader(registrationName=name, FileName=[path])
    models.UpdatePipeline()
    names = names or _variant_names(models)
    # vtkProbeFilter (5.11) crashes on string arrays: resample with the numeric arrays only,
    # from the simplified field (the one the surface shows) so the points sit on the surface.
    numeric = [k for k in models.PointData.keys()
               if models.PointData[k].GetDataType() != 13 and k not in ("variant", array)]
    kept = simple.PassArrays(registrationName="Model arrays", Input=models, PointDataArrays=numeric,
                             CellDataArrays=[], FieldDataArrays=[])
    on_field = simple.ResampleWithDataset(registrationName="Models on field", SourceDataArrays=simp,
                                          DestinationMesh=kept)
    on_field.PassPointArrays = 1
    on_field.PassCellArrays = 1
    lifted_models = on_field if is3d else _warp(on_field, array, scale, "Models", lift)
    # Real geometry (sphere glyphs, tubes): 5.11's point-sphere / line-tube impostors lose
    # their depth test against the surface when coloured through a lookup table.
    glyphs = [("Model points", lifted_models, "Sphere", 0.022)]
    if marked_role is not None:
        marked = simple.Threshold(registrationName="Marked models", Input=lifted_models)
        marked.Scalars = ["POINTS", "role"]
        marked.LowerThreshold = marked.UpperThreshold = marked_role
        glyphs.append(("Marked model points", marked, "Box", 0.03))
    shown = []
    for label, src, kind, size in glyphs:
        g = simple.Glyph(registrationName=label, Input=src, GlyphType=kind)
        g.OrientationArray = ["POINTS", "No orientation array"]
        g.ScaleArray = ["POINTS", "No scale array"]
        g.ScaleFactor = size * extent
        g.GlyphMode = "All Points"
        if kind == "Sphere":
            g.GlyphType.ThetaResolution = 16
            g.GlyphType.PhiResolution = 12
        shown.append(g)
    tubes = simple.Tube(registrationName="Trajectories", Input=lifted_models)
    tubes.Radius = 0.0045 * extent
    tubes.NumberofSides = 10
    lut = simple.GetColorTransferFunction(colour)
    ids = sorted(names) or list(range(int(models.PointData[colour].GetRange()[1]) + 1))
    lut.InterpretValuesAsCategories = 1
    lut.AnnotationsInitialized = 1
    lut.Annotations = [x for i in ids for x in (str(i), names.get(i, str(i)))]
    lut.IndexedColors = [c for k, _ in enumerate(ids) for c in VARIANT_COLOURS[k % len(VARIANT_COLOURS)]]
    for src in [tubes, *shown]:
        md = simple.Show(src, view)
        simple.ColorBy(md, ("POINTS", colour))
        md.LookupTable = lut
        md.Specular = 0.3
    _legend(md, lut, view, "variant" if colour == "variant_id" else colour, (0.90, 0.06), 0.36)


def build_landscape(bundle, size=RenderSettings.size):
    """Build the landscape pipeline and views on ``bundle``; returns the landscape view.

    The "Globscope" layout holds the landscape view (left, 70 %) and the persistence diagram
    view (right). The shown field is the array the bundle's topology was computed on, simplified
    at the threshold it records (:func:`globscope.stages.recorded_topology_settings`): the picture shows the basins
    ``summary.json`` counts."""
    from python_filters import ttk as routing

    load_plugins()
    bundle = os.path.abspath(bundle)
    vti = os.path.join(bundle, "landscape.vti")
    if not os.path.isfile(vti):
        raise FileNotFoundError(f"{vti}: the bundle has no landscape (run `globscope landscape` first)")

    # Layout and views first, each view assigned to its cell as soon as it exists (the GUI would
    # otherwise put an unassigned view into whatever layout is active).
    layout = simple.CreateLayout("Globscope")
    layout.SplitHorizontal(0, 0.7)
    view = simple.CreateView("RenderView")
    simple.AssignViewToLayout(view=view, layout=layout, hint=1)
    simple.RenameView(LANDSCAPE_VIEW, view)
    dview = simple.CreateView("RenderView")
    simple.AssignViewToLayout(view=dview, layout=layout, hint=2)
    simple.RenameView(DIAGRAM_VIEW, dview)
    for v in (view, dview):
        v.OrientationAxesVisibility = 0
        v.Background = [1.0, 1.0, 1.0]
        if hasattr(v, "UseColorPaletteForBackground"):
            v.UseColorPaletteForBackground = 0
    view.ViewSize = list(size)

    land = simple.XMLImageDataReader(registrationName="landscape.vti", FileName=[vti])
    land.UpdatePipeline()
    dims = land.GetDataInformation().GetExtent()
    is3d = dims[5] > dims[4]
    b = land.GetDataInformation().GetBounds()
    topo = recorded_topology_settings(bundle)
    array = topo.array
    lo, hi = _finite_range(land, array)
    extent = max(b[1] - b[0], b[3] - b[2])
    scale = 0.35 * extent / max(hi - lo, 1e-12)
    lift = 0.02 * extent  # markers float this far above the surface

    simp = routing.simplification(land, array, topo.persistence, topo.absolute, name=f"Simplified {array}")
    tree = routing.merge_tree(simp, array, name="Merge tree")
    diagram = routing.persistence_diagram(land, array, name="Persistence diagram")

    lut = simple.GetColorTransferFunction(array)
    lut.ApplyPreset("Viridis (matplotlib)", True)
    lut.RescaleTransferFunction(lo, hi)

    if is3d:
        surf = simple.Contour(registrationName="Loss isosurfaces", Input=simp)
        surf.ContourBy = ["POINTS", array]
        surf.ComputeScalars = 1
        surf.Isosurfaces = [lo + (hi - lo) * q for q in (0.1, 0.25, 0.45)]
        sd = simple.Show(surf, view)
        sd.Opacity = 0.5
    else:
        surface = simple.ExtractSurface(registrationName="Surface", Input=simp)
        surf = _warp(surface, array, scale, "Loss surface")
        sd = simple.Show(surf, view)
    simple.ColorBy(sd, ("POINTS", array))
    sd.LookupTable = lut
    sd.Specular = 0.15
    _legend(sd, lut, view, ARRAY_TITLES.get(array, array), (0.90, 0.52), 0.40)

    rebasin_file = os.path.join(bundle, "rebasin.vtp")
    if os.path.isfile(rebasin_file):  # a re-basin experiment: partners and re-basined models by role
        _show_models(rebasin_file, "role", {0: "A", 1: "B", 2: "B re-basined"}, view, simp, array, scale, lift,
                     extent, is3d, marked_role=2)
    elif os.path.isfile(os.path.join(bundle, "models.vtp")):
        _show_models(os.path.join(bundle, "models.vtp"), "variant_id", None, view, simp, array, scale, lift, extent,
                     is3d)

    if not is3d:
        _show_curves(bundle, view, array, scale, lift, extent)

    nodes = simple.OutputPort(tree, 0)
    arcs = simple.OutputPort(tree, 1)
    if not is3d:
        nodes = _warp(nodes, N.SCALAR, scale, "Merge tree nodes", lift)
        arcs = _warp(arcs, N.SCALAR, scale, "Merge tree arcs", lift)
    nd = simple.Show(nodes, view)
    simple.ColorBy(nd, ("POINTS", None))
    nd.AmbientColor = nd.DiffuseColor = [1.0, 1.0, 1.0]
    nd.RenderPointsAsSpheres = 1
    nd.PointSize = 18.0
    ad = simple.Show(arcs, view)
    simple.ColorBy(ad, ("POINTS", None))
    ad.AmbientColor = ad.DiffuseColor = [0.92, 0.92, 0.92]
    ad.RenderLinesAsTubes = 1
    ad.LineWidth = 4.0

    surf.UpdatePipeline()
    _set_camera(view, surf.GetDataInformation().GetBounds())

    dview.InteractionMode = "2D"
    dd = simple.Show(diagram, dview)
    simple.ColorBy(dd, ("CELLS", N.PERSISTENCE))
    dd.RenderPointsAsSpheres = 1
    dd.PointSize = 8.0
    dd.LineWidth = 2.0
    dd.SetScalarBarVisibility(dview, False)
    dview.AxesGrid.Visibility = 1
    dview.AxesGrid.XTitle = f"birth ({ARRAY_TITLES.get(array, array)})"
    dview.AxesGrid.YTitle = "death"
    for axis in ("X", "Y"):
        setattr(dview.AxesGrid, axis + "TitleColor", [0.1, 0.1, 0.1])
        setattr(dview.AxesGrid, axis + "LabelColor", [0.1, 0.1, 0.1])
    dview.AxesGrid.GridColor = [0.6, 0.6, 0.6]
    dview.ResetCamera()
    simple.SetActiveView(view)
    simple.SetActiveSource(surf)
    return view


def ttk_proxies_in(pvsm_text: str) -> list:
    """The native TTK filters a ``.pvsm`` uses (their XML types, as the state stores them)."""
    import re

    return sorted(set(re.findall(r'<Proxy group="filters" type="(ttk\w+)"', pvsm_text)))


def load_state(path, bundle=None):
    """Load a ``.pvsm`` (data files remapped into ``bundle``) or a Python state (``.py``, run with
    ``GLOBSCOPE_BUNDLE`` set) after the plugins; returns the landscape view.

    A ``.pvsm`` saved with native TTK needs TTK where it is loaded: without it, ParaView would drop
    those filters and everything downstream, so this stops with a message saying what to do."""
    from globscope.errors import GlobscopeError

    ttk = load_plugins()
    path = os.path.abspath(path)
    if path.endswith(".pvsm"):
        with open(path) as f:
            needed = ttk_proxies_in(f.read())
        if needed and not ttk.get("present"):
            raise GlobscopeError(
                f"{path}: the state uses native TTK filters ({', '.join(needed)}), but TTK is not loaded here "
                f"({ttk.get('error')}). Load the TopologyToolKit plugin (e.g. PV_PLUGIN_PATH=<its folder>), or "
                "render the bundle without a state: Globscope then builds the landscape with its own filters.")
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


def render(bundle, out, state=None, size=RenderSettings.size):
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
    rep["ttk"] = {k: ttk.get(k) for k in ("present", "version", "plugin_version", "merge_tree_proxy", "proxies",
                                          "error")}
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
    r.add_argument("--size", nargs=2, type=int, default=RenderSettings.size)
    s = sub.add_parser("save")
    s.add_argument("--bundle", required=True)
    s.add_argument("--out", required=True)
    sub.add_parser("doctor")
    t = sub.add_parser("ttk-topology", help="native TTK on a .vti field, every output into one .npz")
    t.add_argument("--field", required=True)
    t.add_argument("--array", required=True)
    t.add_argument("--persistence", type=float, required=True)
    t.add_argument("--absolute", type=int, choices=(0, 1), default=0)
    t.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "render":
        print(render(a.bundle, a.out, a.state, tuple(a.size)))
    elif a.cmd == "save":
        print(save(a.bundle, a.out))
    elif a.cmd == "ttk-topology":
        import numpy as np

        from python_filters import ttk as routing

        load_plugins(ttk=False)
        info = routing.detect()
        if info["engine"] != "ttk":
            print("GLOBSCOPE-NO-TTK " + str(info["error"]), flush=True)
            sys.exit(3)
        arrays = routing.native_topology(a.field, a.array, a.persistence, bool(a.absolute))
        with open(a.out, "wb") as f:  # the caller's temporary file: it moves it once complete
            np.savez(f, **arrays)
        print(a.out)
    else:
        print("GLOBSCOPE-DOCTOR " + json.dumps(doctor()), flush=True)


if __name__ == "__main__":
    from globscope.errors import GlobscopeError

    try:
        main()
    except GlobscopeError as e:  # the user's mistake: its message, not a traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
