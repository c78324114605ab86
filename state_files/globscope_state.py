"""Globscope's ParaView side: load the plugin (and TTK when present), build or load the landscape
state on a bundle, render it, save it, report on the installation.

Import it from pvpython/pvbatch/the GUI's Python shell, or run it::

    pvbatch globscope_state.py render --bundle BUNDLE --out FILE.png [--state S.pvsm|S.py] [--size W H]
    pvbatch globscope_state.py save   --bundle BUNDLE --out BUNDLE/globscope.pvsm
    pvpython globscope_state.py doctor
    pvpython globscope_state.py ttk-topology --field F.vti --array A --persistence P --absolute 0|1 --out O.npz

(``globscope render`` / ``globscope paraview`` / ``globscope doctor`` do that for you, with the
right environment and ``xvfb-run`` when there is no display.)

The landscape state (:func:`build_landscape`), a figure of three views: ``landscape.vti``'s
``log_loss`` simplified by persistence and warped into a smoothly shaded surface coloured by log
loss; the model points and training trajectories (``models.vtp``) on it coloured by variant; the
join tree's arcs along the field and its nodes coloured by critical type; a 3-D view from a camera
the data choose, the same scene seen from above (a map with latent axes) and the persistence
diagram; a title and one column of legends. Topology uses native TTK when its plugin loads, else
Globscope's filters (:mod:`python_filters.ttk`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass

try:  # Globscope's folders and the ParaView 5.11 hook, before ParaView's plugin loader is imported
    import globscope_entry
except ImportError:
    raise ImportError("Globscope's entry helper is not importable: start ParaView with `globscope paraview` "
                      "or `globscope render`, or load the Globscope plugin first") from None
globscope_entry.setup()

import globscope_pv_compat  # noqa: E402
from paraview import simple  # noqa: E402

from globscope import names as N  # noqa: E402
from globscope.names import CriticalType  # noqa: E402
from globscope.settings import RenderSettings  # noqa: E402
from globscope.stages import recorded_topology_settings  # noqa: E402

LAYOUT = "Globscope"
LANDSCAPE_VIEW = "Landscape"
MAP_VIEW = "Landscape map"
DIAGRAM_VIEW = "Persistence Diagram"
ARRAY_TITLES = {N.LOG_LOSS: "log10 loss", N.LOSS: "loss", N.ACCURACY: "accuracy"}
METHOD_TITLES = {"autoencoder": "autoencoder", "pca": "PCA", "kernel-pca": "Kernel-PCA", "umap": "UMAP"}
# The picture: the 3-D view on the left, this share of the width; on the right the top-down map
# over the persistence diagram, the map this share of the column's height.
LANDSCAPE_WIDTH = 0.58
MAP_HEIGHT = 0.62
TEXT = [0.1, 0.1, 0.1]
# Categorical colours for the variants: saturated hues that stand out on a viridis surface and on
# white (the merge tree is drawn in white, its nodes by critical type).
VARIANT_COLOURS = [
    (0.894, 0.102, 0.110), (1.000, 0.498, 0.000), (0.902, 0.161, 0.541), (0.651, 0.337, 0.157),
    (0.094, 0.094, 0.094), (0.969, 0.506, 0.749), (0.000, 0.749, 1.000), (0.550, 0.000, 0.000),
    (0.600, 0.600, 0.000), (0.580, 0.404, 0.741),
]
# Join-tree nodes by CriticalType: minima white in the dark valleys, saddles gold on the slopes, the
# root (the field's maximum) black on the yellow heights.
CRITICAL_POINTS = {CriticalType.MINIMUM: ("minimum", (1.0, 1.0, 1.0)),
                   CriticalType.SADDLE1: ("saddle", (1.0, 0.78, 0.0)),
                   CriticalType.DEGENERATE: ("multi-saddle", (0.72, 0.45, 0.0)),
                   CriticalType.MAXIMUM: ("root (maximum)", (0.0, 0.0, 0.0))}
ARC_COLOUR = [0.96, 0.96, 0.96]
KEPT = [0.75, 0.05, 0.05]  # the persistence diagram's pairs beyond the simplification threshold
ARC_SMOOTHING = 4  # passes of the valley paths' smoothing: grid steps become curves within a cell
# The 3-D camera: directions tried (degrees) and the one preferred among those that hide nothing
AZIMUTHS = range(0, 360, 10)
ELEVATIONS = tuple(range(30, 80, 5))
AZIMUTH = -120.0  # preferred: from the south-south-west
# a marker counts as hidden when the line from its centre to the camera passes more than this many
# lifts under the ground (a model's sphere has a radius of about half a lift: its top half would not show)
HIDDEN_DEPTH = 0.25
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


@dataclass
class _Scene:
    """What the parts of the landscape picture share.

    Attributes
    ----------
    view, map : proxy
        The 3-D view and the top-down map (parallel projection of the same scene).
    array : str
        The field shown.
    scale : float
        The surface's warp: ``z = scale * value``.
    lift : float
        Markers (models, the tree) float this far above the surface.
    extent : float
        The larger side of the latent box.
    is3d : bool
        A 3-D latent space (isosurfaces; nothing is warped).
    size : (int, int)
        The whole picture (the layout) in pixels.
    """

    view: object
    map: object
    array: str
    scale: float
    lift: float
    extent: float
    is3d: bool
    size: tuple

    @property
    def font(self) -> int:
        """Label font size in pixels: 18 in a 1600 x 1000 picture, never under 11 (the GUI's
        default window)."""
        return max(11, round(min(self.size[0] * 0.625, self.size[1]) / 55))

    @property
    def title_font(self) -> int:
        return round(1.3 * self.font)

    def pixels(self, view) -> tuple:
        """A view's size in pixels within the picture."""
        w, h = self.size
        if view is self.view:
            return LANDSCAPE_WIDTH * w, h
        share = MAP_HEIGHT if view is self.map else 1.0 - MAP_HEIGHT
        return (1.0 - LANDSCAPE_WIDTH) * w, share * h


def _warp(source, array, scale, name, offset=0.0):
    """Lift a 2-D data set (z = 0) to ``z = scale * array + offset``: the surface's own warp, with
    ``offset`` raising markers just above it."""
    if not offset:
        source.UpdatePipeline()  # the GUI's Scalars box lists the arrays of an updated input only
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


def _ticks(lo, hi, n=5):
    """Round values within ``[lo, hi]`` (about ``n``) and the printf format that writes them all
    with the same decimals (the colour bars' labels)."""
    raw = (hi - lo) / max(n - 1, 1) or abs(hi) or 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if step / mag == 2.5 else 0))
    return ticks, f"%.{decimals}f"


class _Legends:
    """Legends stacked down the right edge of a view below its title, in a column as wide as the
    widest (labels included), sized from the picture's font.

    Attributes
    ----------
    column : float
        The column's width in pixels (what the camera leaves free).
    """

    def __init__(self, scene, view):
        self.scene, self.view = scene, view
        self.width, self.height = scene.pixels(view)
        self.top = 1.0 - 1.8 * scene.title_font / self.height
        self.column = 0.0
        self.bars = []

    def add(self, display, lut, title, labels, length_px):
        """Show ``display``'s legend (``labels``: the label texts, for the width) under the previous
        one."""
        s = self.scene
        display.SetScalarBarVisibility(self.view, True)
        bar = simple.GetScalarBar(lut, self.view)
        bar.Title, bar.ComponentTitle = title, ""
        bar.HorizontalTitle = 1  # above the bar: a vertical title would need its own column
        bar.WindowLocation = "Any Location"
        bar.Orientation = "Vertical"
        bar.TextPosition = "Ticks left/bottom, annotations right/top" if lut.InterpretValuesAsCategories \
            else "Ticks right/top, annotations left/bottom"  # the labels on the right either way
        bar.TitleColor = bar.LabelColor = TEXT
        bar.TitleFontSize, bar.LabelFontSize = s.font, s.font
        bar.ScalarBarThickness = s.font
        bar.TitleJustification = "Left"
        bar.DrawBackground = 1  # a white swatch (minimum) on the white view
        bar.BackgroundColor = [0.93, 0.93, 0.93, 1.0]
        bar.BackgroundPadding = 0.3 * s.font
        title_px = 1.6 * s.font
        chars = max([len(t) for t in labels] or [1])
        # background padding on both sides, swatch or bar, labels (or the title when wider)
        self.column = max(self.column, max(1.6 * s.font + 0.6 * s.font * chars, 0.6 * s.font * len(title))
                          + 1.4 * s.font)
        bar.ScalarBarLength = length_px / self.height
        self.bars.append(bar)
        for b in self.bars:  # left-aligned in the column
            b.Position = [1.0 - (self.column - 0.4 * s.font) / self.width, b.Position[1]]
        bar.Position = [bar.Position[0], self.top - (length_px + title_px) / self.height]
        self.top -= (length_px + title_px + 1.0 * s.font) / self.height
        return bar

    def continuous(self, display, lut, title, lo, hi, share):
        """A colour bar ``share`` of the view high, labelled at round values in one format."""
        ticks, fmt = _ticks(lo, hi)
        bar = self.add(display, lut, title, [fmt % t for t in ticks], share * self.height)
        bar.AutomaticLabelFormat = 0
        bar.LabelFormat = fmt
        bar.UseCustomLabels = 1
        bar.CustomLabels = ticks
        bar.AddRangeLabels = 0  # the ends would come in another format
        bar.DrawTickMarks = 1

    def categorical(self, display, lut, title):
        """A legend of a categorical table: one swatch per annotation."""
        names = list(lut.Annotations)[1::2]
        self.add(display, lut, title, names, 1.3 * self.scene.font * len(names))


def _categorical(array, names_by_value, colours):
    """A categorical lookup table for ``array``: each value annotated with its name, coloured in turn."""
    lut = simple.GetColorTransferFunction(array)
    lut.InterpretValuesAsCategories = 1
    lut.AnnotationsInitialized = 1
    lut.Annotations = [x for v, name in names_by_value.items() for x in (str(v), name)]
    lut.IndexedColors = [c for colour in colours for c in colour]
    return lut


def _show(source, views, colour=None, lut=None, solid=None, specular=0.3):
    """Show ``source`` in each view, coloured by the point array ``colour`` through ``lut`` or in
    the ``solid`` colour; returns the displays."""
    out = []
    for view in views:
        d = simple.Show(source, view)
        if colour:
            simple.ColorBy(d, ("POINTS", colour))
            d.LookupTable = lut
        else:
            simple.ColorBy(d, ("POINTS", None))
            d.AmbientColor = d.DiffuseColor = list(solid)
        d.Specular = specular
        out.append(d)
    return out


def _show_curves(bundle, scene, legends):
    """The validation's mode-connectivity curves on the landscape of the bundle's manifold: tubes
    at the height of their real loss, coloured by it (when ``validation/curves.vtp`` exists), in
    the 3-D view (from above, the surface hides what runs under it)."""
    from globscope.manifolds import read_manifold_info
    from python_filters import ttk as routing

    path = os.path.join(bundle, "validation", "curves.vtp")
    if not os.path.isfile(path):
        return None
    method = read_manifold_info(os.path.join(bundle, "manifold.pt")).method
    curves = routing.create("GlobscopeValidationReader", group="sources", registration_name="curves.vtp",
                            FileName=path, Manifold=method)
    height = "log10(real_loss)" if scene.array == N.LOG_LOSS else "real_loss"
    tubes = simple.Tube(registrationName="Curves", Input=_lift(curves, height, scene.scale, scene.lift,
                                                                "Curves lifted"))
    tubes.Radius = 0.006 * scene.extent
    tubes.NumberofSides = 10
    lut = simple.GetColorTransferFunction("real_loss")
    lut.ApplyPreset("Inferno (matplotlib)", True)
    (d,) = _show(tubes, [scene.view], "real_loss", lut)
    lo, hi = _finite_range(curves, "real_loss")
    legends.continuous(d, lut, "curve loss", lo, hi, 0.15)
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


def _show_models(path, colour, names, scene, simp, legends, marked_role=None):
    """Model points (spheres) and training trajectories (tubes) on the surface, coloured by the
    categorical point array ``colour`` (``names``: its value -> legend name; default the variant
    names); points whose ``role`` is ``marked_role`` are drawn as cubes. Returns the lifted model
    points (what the camera must show) and ``colour`` (what groups them into trajectories)."""
    name = os.path.basename(path)
    models = simple.XMLPolyDataReader(registrationName=name, FileName=[path])
    models.UpdatePipeline()
    names = names or _variant_names(models)
    # vtkProbeFilter (5.11) crashes on string arrays: resample with the numeric arrays only,
    # from the simplified field (the one the surface shows) so the points sit on the surface.
    numeric = [k for k in models.PointData.keys()
               if models.PointData[k].GetDataType() != 13 and k not in ("variant", scene.array)]
    kept = simple.PassArrays(registrationName="Model arrays", Input=models, PointDataArrays=numeric,
                             CellDataArrays=[], FieldDataArrays=[])
    on_field = simple.ResampleWithDataset(registrationName="Models on field", SourceDataArrays=simp,
                                          DestinationMesh=kept)
    on_field.PassPointArrays = 1
    on_field.PassCellArrays = 1
    lifted_models = on_field if scene.is3d else _warp(on_field, scene.array, scene.scale, "Models", scene.lift)
    # Real geometry (sphere glyphs, tubes): 5.11's point-sphere / line-tube impostors lose
    # their depth test against the surface when coloured through a lookup table.
    glyphs = [("Model points", lifted_models, "Sphere", 0.022)]
    if marked_role is not None:
        marked = simple.Threshold(registrationName="Marked models", Input=lifted_models)
        marked.Scalars = ["POINTS", "role"]
        marked.LowerThreshold = marked.UpperThreshold = marked_role
        glyphs.append(("Marked model points", marked, "Box", 0.03))
    shown = [_glyphs(label, src, kind, size * scene.extent) for label, src, kind, size in glyphs]
    tubes = simple.Tube(registrationName="Trajectories", Input=lifted_models)
    tubes.Radius = 0.0045 * scene.extent
    tubes.NumberofSides = 10
    ids = sorted(names) or list(range(int(models.PointData[colour].GetRange()[1]) + 1))
    lut = _categorical(colour, {i: names.get(i, str(i)) for i in ids},
                       [VARIANT_COLOURS[k % len(VARIANT_COLOURS)] for k in range(len(ids))])
    for src in [tubes, *shown]:
        d, _ = _show(src, [scene.view, scene.map], colour, lut)
    legends.categorical(d, lut, "variant" if colour == "variant_id" else colour)
    return lifted_models, colour


def _glyphs(name, source, kind, size):
    """A glyph of ``kind`` (Sphere, Box) of diameter ``size`` at every point of ``source``."""
    g = simple.Glyph(registrationName=name, Input=source, GlyphType=kind)
    g.OrientationArray = ["POINTS", "No orientation array"]
    g.ScaleArray = ["POINTS", "No scale array"]
    g.ScaleFactor = size
    g.GlyphMode = "All Points"
    if kind == "Sphere":
        g.GlyphType.ThetaResolution = 16
        g.GlyphType.PhiResolution = 12
    return g


def arc_paths(arcs, field, array):
    """The merge tree's arcs drawn along the field (run by the "Merge tree arc paths" filter).

    Each arc, a line from node to node as either engine's merge tree writes it, becomes the
    polyline of its valley path over ``field`` (:func:`globscope.topology.paths.valley_path`: down
    from the upper node through low ground, never above it), ordered by the ``<array>_Order``
    array where the simplification wrote one, smoothed by :data:`ARC_SMOOTHING` passes.

    Parameters
    ----------
    arcs : vtkDataSet
        The merge tree's arcs (output port 1): line cells between the nodes' points.
    field : vtkImageData
        The (simplified) field the tree was computed on.
    array : str

    Returns
    -------
    vtkPolyData
        One polyline per arc, in the arcs' order and with their cell arrays; points in the latent
        space (z = 0 on a 2-D field: warp them like the surface).
    """
    import numpy as np
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    from globscope.grid import Grid
    from globscope.topology.paths import valley_path

    grid = Grid.from_extent(field.GetOrigin(), field.GetSpacing(), field.GetExtent())
    values = grid.to_field(vtk_to_numpy(field.GetPointData().GetArray(array)))
    order = field.GetPointData().GetArray(f"{array}_Order")
    order = None if order is None else vtk_to_numpy(order)
    ends = grid.nearest_vertex(vtk_to_numpy(arcs.GetPoints().GetData())[:, :grid.dim])[0]
    polylines, lines = [], vtkCellArray()
    for c in range(arcs.GetNumberOfCells()):
        ids = arcs.GetCell(c).GetPointIds()
        path = valley_path(values, int(ends[ids.GetId(0)]), int(ends[ids.GetId(1)]), order=order,
                           spacing=grid.spacing)
        p = grid.coordinates(path)
        for _ in range(ARC_SMOOTHING):  # ends fixed on the nodes
            p[1:-1] = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        start = sum(len(q) for q in polylines)
        lines.InsertNextCell(len(p), list(range(start, start + len(p))))
        polylines.append(p)
    xyz = np.zeros((sum(len(q) for q in polylines), 3))
    if polylines:
        xyz[:, :grid.dim] = np.concatenate(polylines)
    points = vtkPoints()
    points.SetData(numpy_to_vtk(xyz, deep=True))
    out = vtkPolyData()
    out.SetPoints(points)
    out.SetLines(lines)
    out.GetCellData().ShallowCopy(arcs.GetCellData())
    return out


def _show_tree(scene, tree, simp, legends):
    """The join tree: its arcs along the field (white tubes), its nodes as spheres coloured by
    critical type (legend). Returns the lifted nodes."""
    paths = simple.ProgrammableFilter(registrationName="Merge tree arc paths",
                                      Input=[simple.OutputPort(tree, 1), simp])
    paths.OutputDataSetType = "vtkPolyData"
    paths.Script = ("import globscope_state\n"
                    "self.GetOutput().ShallowCopy(globscope_state.arc_paths(self.GetInputDataObject(0, 0), "
                    f"self.GetInputDataObject(0, 1), {scene.array!r}))")
    nodes = simple.OutputPort(tree, 0)
    if not scene.is3d:  # the arcs' heights: the simplified field probed along them, as the surface's
        on_field = simple.ResampleWithDataset(registrationName="Merge tree arcs on field", SourceDataArrays=simp,
                                              DestinationMesh=paths)
        on_field.PassCellArrays = 1
        paths = _warp(on_field, scene.array, scene.scale, "Merge tree arcs", scene.lift)
        nodes = _warp(nodes, N.SCALAR, scene.scale, "Merge tree nodes", scene.lift)
    tubes = simple.Tube(registrationName="Merge tree arc tubes", Input=paths)
    tubes.Radius = 0.0035 * scene.extent
    tubes.NumberofSides = 10
    _show(tubes, [scene.view, scene.map], solid=ARC_COLOUR)
    present = set(_point_array(nodes, N.CRITICAL_TYPE).tolist())
    types = [t for t in CRITICAL_POINTS if t in present]  # the legend names those in the tree only
    lut = _categorical(N.CRITICAL_TYPE, {int(t): CRITICAL_POINTS[t][0] for t in types},
                       [CRITICAL_POINTS[t][1] for t in types])
    d, _ = _show(_glyphs("Critical points", nodes, "Sphere", 0.034 * scene.extent), [scene.view, scene.map],
                 N.CRITICAL_TYPE, lut)
    legends.categorical(d, lut, "merge tree")
    return nodes


def _layout(size):
    """The "Globscope" layout and its views (3-D landscape, map, persistence diagram).

    The GUI's start-up layout is used when it shows nothing yet (its empty view is removed): no
    second, empty tab. Returns the three views and the picture's size in pixels: the layout's own
    where the GUI sized it, else ``size`` (pvbatch), which it is given.
    """
    layout = None
    for candidate in simple.GetLayouts().values():
        views = simple.GetViewsInLayout(candidate)
        if len(views) <= 1 and not any(v.Representations for v in views):
            shown = candidate.GetSize()  # the GUI's: its size goes with its view
            for v in views:
                simple.Delete(v)
            layout = candidate
            simple.RenameLayout(LAYOUT, layout)
            break
    if layout is not None and min(shown) > 0:
        size = tuple(shown)
    else:
        layout = layout or simple.CreateLayout(LAYOUT)
        layout.SetSize(*size)
    # each view assigned to its cell as soon as it exists (the GUI would otherwise put an
    # unassigned view into whatever layout is active)
    layout.SplitHorizontal(0, LANDSCAPE_WIDTH)
    layout.SplitVertical(2, MAP_HEIGHT)
    views = []
    for name, cell in ((LANDSCAPE_VIEW, 1), (MAP_VIEW, 5), (DIAGRAM_VIEW, 6)):
        v = simple.CreateView("RenderView")
        simple.AssignViewToLayout(view=v, layout=layout, hint=cell)
        simple.RenameView(name, v)
        v.OrientationAxesVisibility = 0
        v.Background = [1.0, 1.0, 1.0]
        if hasattr(v, "UseColorPaletteForBackground"):
            v.UseColorPaletteForBackground = 0
        views.append(v)
    return views, size


def _title(bundle, array, is3d):
    """The picture's title: the task, the field and the manifold, as far as the bundle says."""
    from globscope.errors import GlobscopeError
    from globscope.manifolds import read_manifold_info

    space = "3-D latent space" if is3d else "latent plane"
    try:
        info = read_manifold_info(os.path.join(bundle, "manifold.pt"))
    except GlobscopeError:  # a bundle without its manifold: the field alone
        return f"{ARRAY_TITLES.get(array, array).capitalize()} over the {space}"
    task = info.meta.get("task")
    method = METHOD_TITLES.get(info.method, info.method)
    return f"{task + ': ' if task else ''}{ARRAY_TITLES.get(array, array)} over the {method} {space}"


def _text(scene, view, text, size, name):
    """``text`` in the view's upper left corner, wrapped where the view is too narrow for it in one
    line (the GUI's default window)."""
    t = simple.Text(registrationName=name, Text=textwrap.fill(text, int(scene.pixels(view)[0] / (0.56 * size))))
    d = simple.Show(t, view)
    d.WindowLocation = "Upper Left Corner"
    d.Justification = "Left"
    d.FontSize = size
    d.Color = TEXT
    return t


def _axes(view, scene, titles, faces, labelled):
    """The view's grid axes: ``titles`` (x, y, z), the faces drawn and the edges labelled (bit
    masks of ``vtkGridAxesActor3D``: min-x, min-y, min-z, max-x, max-y, max-z = 1, 2, 4, 8, 16, 32)."""
    g = view.AxesGrid
    g.Visibility = 1
    g.XTitle, g.YTitle, g.ZTitle = titles
    g.FacesToRender = faces
    g.AxesToLabel = labelled
    g.GridColor = [0.75, 0.75, 0.75]
    for axis in "XYZ":
        setattr(g, axis + "TitleColor", TEXT)
        setattr(g, axis + "LabelColor", TEXT)
        setattr(g, axis + "TitleFontSize", scene.font)
        setattr(g, axis + "LabelFontSize", scene.font)


def _direction(azimuth, elevation):
    """Unit vector towards a camera at ``azimuth`` (from +x, counter-clockwise) and ``elevation``
    above the latent plane, in degrees."""
    import numpy as np

    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _hidden(camera, targets, grid, heights, tol):
    """Which targets (n, 3) the height field hides from the ``camera`` position: a point of the
    straight line to it, sampled every half cell up to the highest ground, lies more than ``tol``
    below the surface."""
    import numpy as np

    ray = camera - targets
    top = np.clip((heights.max() - targets[:, 2]) / ray[:, 2], 0.0, 1.0)  # beyond it nothing hides
    n = int(math.ceil((top * np.linalg.norm(ray, axis=1)).max() / (0.5 * min(grid.spacing)))) + 1
    t = top[:, None] * np.linspace(0.0, 1.0, n + 1)[None, 1:]
    points = targets[:, None, :] + t[..., None] * ray[:, None, :]
    z = grid.interpolate(heights, points[..., :2].reshape(-1, 2), outside="nan").reshape(t.shape)
    return np.any(points[..., 2] < z - tol, axis=1)  # NaN (off the plane) hides nothing


def _camera_direction(grid, heights, targets, groups, tol, frame):
    """The direction to the 3-D camera: of :data:`AZIMUTHS` x :data:`ELEVATIONS`, each framed by
    ``frame`` (direction -> the camera's position), those that hide the least (each group's hidden
    share of its targets, summed: a trajectory, a minimum); of those the lowest (the most
    relief), and at it the azimuth nearest :data:`AZIMUTH`."""
    import numpy as np

    def cost(az, el):
        hidden = _hidden(frame(_direction(az, el)), targets, grid, heights, tol)
        share = sum(hidden[groups == g].mean() for g in np.unique(groups))
        return round(float(share), 2), el, abs((az - AZIMUTH + 180.0) % 360.0 - 180.0)

    return _direction(*min(((az, el) for el in ELEVATIONS for az in AZIMUTHS), key=lambda c: cost(*c)))


def _framing(direction, points, view_angle, aspect, free, margin=0.03):
    """The perspective camera from ``direction`` (z up) that makes ``points`` (n, 3) fill the part
    ``free`` (x0, x1, y0, y1 in -1 … 1) of a view (``aspect``: width / height; ``view_angle``: its
    vertical angle in degrees), up to ``margin`` on its tighter side, centred in it.

    Returns
    -------
    focal : ndarray of shape (3,)
    distance : float
        From the focal point to the camera, along ``direction``.
    """
    import numpy as np

    forward = -direction
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    tan_v = math.tan(math.radians(view_angle) / 2.0)
    tan_h = tan_v * aspect
    x0, x1, y0, y1 = free
    centre = (points.max(0) + points.min(0)) / 2.0
    distance = np.linalg.norm(points - centre, axis=1).max() / math.sin(math.radians(view_angle) / 2.0)
    for _ in range(30):  # centre the points' screen box in the free part, then scale the distance to fit it
        rel = points - (centre + distance * direction)
        depth = rel @ forward
        x, y = rel @ right / (depth * tan_h), rel @ up / (depth * tan_v)
        shift = ((x.max() + x.min() - x0 - x1) / 2.0 * tan_h * right
                 + (y.max() + y.min() - y0 - y1) / 2.0 * tan_v * up)
        centre = centre + distance * shift
        distance *= max((x.max() - x.min()) / (x1 - x0), (y.max() - y.min()) / (y1 - y0)) / (1.0 - margin)
    return centre, distance


def _plot_box(view, scene):
    """The part of a view a plot seen from above fills, in pixels (left, bottom, width, height): room
    left for the y title (horizontal) and labels, below for the x labels and title, above for the
    view's title."""
    w, h = scene.pixels(view)
    f = scene.font
    left = (0.6 * len(view.AxesGrid.YTitle) + 3.5) * f
    bottom, top, right = 4.6 * f, 2.2 * f, 1.0 * f
    return left, bottom, w - left - right, h - bottom - top


def _plan_camera(view, scene, bounds):
    """Look straight down at the box ``bounds`` (x0, x1, y0, y1), parallel projection, y up, the
    box filling the view's :func:`_plot_box`."""
    w, h = scene.pixels(view)
    left, bottom, width, height = _plot_box(view, scene)
    x0, x1, y0, y1 = bounds[:4]
    per_pixel = max((x1 - x0) / width, (y1 - y0) / height)
    # the box's centre on the plot box's centre
    cx = (x0 + x1) / 2.0 - per_pixel * (left + width / 2.0 - w / 2.0)
    cy = (y0 + y1) / 2.0 - per_pixel * (bottom + height / 2.0 - h / 2.0)
    view.InteractionMode = "2D"
    view.CameraParallelProjection = 1
    view.CameraFocalPoint = [cx, cy, 0.0]
    view.CameraPosition = [cx, cy, 10.0 * max(x1 - x0, y1 - y0)]
    view.CameraViewUp = [0.0, 1.0, 0.0]
    view.CameraParallelScale = per_pixel * h / 2.0


def _point_array(source, array):
    """A point array of the source's output, as numpy."""
    from paraview import servermanager as sm
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(sm.Fetch(source).GetPointData().GetArray(array))


def _points(*sources):
    """The points of the sources' outputs, one (n, 3) array."""
    import numpy as np
    from paraview import servermanager as sm
    from vtkmodules.util.numpy_support import vtk_to_numpy

    out = [vtk_to_numpy(d.GetPoints().GetData()) for d in map(sm.Fetch, sources)
           if d is not None and d.GetNumberOfPoints()]
    return np.concatenate(out).astype(float)


def _aim_landscape(scene, surf, simp, marked, curves, legends):
    """The 3-D camera, framing the surface and the curves beside the legends and under the title,
    from a direction chosen so that the terrain hides no model and no minimum (``marked``: the
    lifted model points and the array grouping them into trajectories, the tree's lifted nodes);
    set here rather than by the first Render()'s camera reset."""
    import numpy as np
    from paraview import servermanager as sm
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from globscope.grid import Grid

    view = scene.view
    w, h = scene.pixels(view)
    points = _points(surf, *[s for s in (curves,) if s is not None])
    free = (-1.0, 1.0 - 2.0 * legends.column / w, -1.0, 1.0 - 3.6 * scene.title_font / h)

    def frame(direction, samples=4000):
        focal, distance = _framing(direction, points[:: max(1, len(points) // samples)], view.CameraViewAngle,
                                   w / h, free)
        return focal, focal + distance * direction

    direction = _direction(AZIMUTH, ELEVATIONS[1])
    if not scene.is3d:
        field = sm.Fetch(simp)
        grid = Grid.from_extent(field.GetOrigin(), field.GetSpacing(), field.GetExtent())
        heights = scene.scale * grid.to_field(vtk_to_numpy(field.GetPointData().GetArray(scene.array)))
        targets, groups = [], []
        for source, array in marked:
            values = _point_array(source, array)
            keep = values == CriticalType.MINIMUM if array == N.CRITICAL_TYPE else np.ones(len(values), bool)
            targets.append(_points(source)[keep])
            # a trajectory is one group, each minimum its own
            groups.append(-1 - np.arange(keep.sum()) if array == N.CRITICAL_TYPE else values[keep])
        direction = _camera_direction(grid, heights, np.concatenate(targets), np.concatenate(groups),
                                      HIDDEN_DEPTH * scene.lift, lambda d: frame(d)[1])
    focal, position = frame(direction, 20000)
    view.CameraFocalPoint = list(focal)
    view.CameraPosition = list(position)
    view.CameraViewUp = [0.0, 0.0, 1.0]
    view.CameraParallelProjection = 0
    if hasattr(simple, "_DisableFirstRenderCameraReset"):  # keep this camera on the first Render()
        simple._DisableFirstRenderCameraReset()


def _show_diagram(scene, dview, land, topo, lo, hi):
    """The persistence diagram of the unsimplified field: every pair grey, the pairs beyond the
    simplification threshold (the basins the surface keeps) red, and the threshold's line. The
    birth axis spans the births only (minima are all low: over the whole range they would crowd
    at its left end), stretched to fill the plot."""
    import numpy as np

    from globscope.topology.simplification import absolute_threshold
    from python_filters import ttk as routing

    diagram = routing.persistence_diagram(land, scene.array, name="Persistence diagram")
    threshold = absolute_threshold(np.array([lo, hi]), topo.persistence, topo.absolute) or 0.0
    pairs = simple.Threshold(registrationName="Diagram pairs", Input=diagram)
    pairs.Scalars = ["CELLS", N.PAIR_IDENTIFIER]
    pairs.LowerThreshold, pairs.UpperThreshold = 0, 1e30  # not the diagonal (-1)
    kept = simple.Threshold(registrationName="Kept pairs", Input=pairs)
    kept.Scalars = ["CELLS", N.PERSISTENCE]
    kept.LowerThreshold, kept.UpperThreshold = threshold, 1e30
    title = ARRAY_TITLES.get(scene.array, scene.array)
    _axes(dview, scene, (f"birth ({title})", f"death ({title})", ""), 4, 3)
    births = _points(pairs)[:, 0]
    pad = 0.08 * max(births.max() - births.min(), 1e-6 * (hi - lo))
    x0, x1 = births.min() - pad, births.max() + pad
    _, _, width, height = _plot_box(dview, scene)
    stretch = (hi - lo) / (x1 - x0) * width / height  # the births fill the plot's width
    line = simple.Line(registrationName="Persistence threshold", Point1=[x0, x0 + threshold, 0.0],
                       Point2=[x1, x1 + threshold, 0.0])
    for source, colour, line_width in ((diagram, [0.55, 0.55, 0.55], 0.08), (line, [0.95, 0.6, 0.6], 0.08),
                                       (kept, KEPT, 0.16)):
        d = _show(source, [dview], solid=colour, specular=0.0)[0]
        d.LineWidth = line_width * scene.font
        d.Scale = [stretch, 1.0, 1.0]
    dview.AxesGrid.ShowGrid = 0
    dview.AxesGrid.DataScale = [stretch, 1.0, 1.0]  # labels in the field's values, bounds as drawn
    dview.AxesGrid.UseCustomBounds = 1
    dview.AxesGrid.CustomBounds = [stretch * x0, stretch * x1, lo, hi, 0.0, 0.0]
    _text(scene, dview, "Persistence diagram (red: kept; pink: threshold)", scene.font, "Diagram title")
    _plan_camera(dview, scene, (stretch * x0, stretch * x1, lo, hi))


def build_landscape(bundle, size=RenderSettings.size):
    """Build the landscape pipeline and views on ``bundle``; returns the landscape view.

    The "Globscope" layout holds the 3-D landscape (left, :data:`LANDSCAPE_WIDTH` of the width),
    the same scene seen from above (a map: its basins, trajectories and tree at a glance, latent
    axes labelled) over the persistence diagram (right). The shown field is the array the
    bundle's topology was computed on, simplified at the threshold it records
    (:func:`globscope.stages.recorded_topology_settings`): the picture shows the basins
    ``summary.json`` counts. The surface is shaded with point normals; the merge tree's arcs
    follow the field (:func:`arc_paths`), its nodes are coloured by critical type; the 3-D
    camera is chosen so that the terrain hides no model and no minimum (:func:`_aim_landscape`).
    ``size``: the picture in pixels (the GUI's layout keeps its own size).
    """
    from python_filters import ttk as routing

    load_plugins()
    bundle = os.path.abspath(bundle)
    vti = os.path.join(bundle, "landscape.vti")
    if not os.path.isfile(vti):
        raise FileNotFoundError(f"{vti}: the bundle has no landscape (run `globscope landscape` first)")
    (view, mview, dview), size = _layout(size)

    land = simple.XMLImageDataReader(registrationName="landscape.vti", FileName=[vti])
    land.UpdatePipeline()
    dims = land.GetDataInformation().GetExtent()
    is3d = dims[5] > dims[4]
    b = land.GetDataInformation().GetBounds()
    topo = recorded_topology_settings(bundle)
    array = topo.array
    lo, hi = _finite_range(land, array)
    extent = max(b[1] - b[0], b[3] - b[2])
    scene = _Scene(view, mview, array, 0.35 * extent / max(hi - lo, 1e-12), 0.02 * extent, extent, is3d, size)

    simp = routing.simplification(land, array, topo.persistence, topo.absolute, name=f"Simplified {array}")
    tree = routing.merge_tree(simp, array, name="Merge tree")

    lut = simple.GetColorTransferFunction(array)
    lut.ApplyPreset("Viridis (matplotlib)", True)
    lut.RescaleTransferFunction(lo, hi)
    legends = _Legends(scene, view)
    if is3d:
        surf = simple.Contour(registrationName="Loss isosurfaces", Input=simp)
        surf.ContourBy = ["POINTS", array]
        surf.ComputeScalars = 1
        surf.Isosurfaces = [lo + (hi - lo) * q for q in (0.1, 0.25, 0.45)]
        for d in _show(surf, [view, mview], array, lut, specular=0.15):
            d.Opacity = 0.5
    else:
        flat = simple.ExtractSurface(registrationName="Surface", Input=simp)
        # point normals: the faceted cells' own normals shade the slopes in stripes
        surf = simple.GenerateSurfaceNormals(registrationName="Shaded surface",
                                             Input=_warp(flat, array, scene.scale, "Loss surface"))
        surf.Splitting = 0  # the field is continuous: no creases
        _show(surf, [view, mview], array, lut, specular=0.15)
        isolines = simple.Contour(registrationName="Isolines", Input=flat)
        isolines.ContourBy = ["POINTS", array]
        isolines.ComputeScalars = 1
        isolines.Isosurfaces = _ticks(lo, hi, 12)[0]
        lines = _show(_warp(isolines, array, scene.scale, "Isolines lifted", 0.002 * extent), [mview],
                      solid=[0.2, 0.2, 0.2], specular=0.0)[0]
        lines.Opacity = 0.35
    legends.continuous(simple.GetDisplayProperties(surf, view), lut, ARRAY_TITLES.get(array, array), lo, hi, 0.22)

    marked = [(_show_tree(scene, tree, simp, legends), N.CRITICAL_TYPE)]
    rebasin_file = os.path.join(bundle, "rebasin.vtp")
    if os.path.isfile(rebasin_file):  # a re-basin experiment: partners and re-basined models by role
        marked.append(_show_models(rebasin_file, "role", {0: "A", 1: "B", 2: "B re-basined"}, scene, simp, legends,
                                   marked_role=2))
    elif os.path.isfile(os.path.join(bundle, "models.vtp")):
        marked.append(_show_models(os.path.join(bundle, "models.vtp"), "variant_id", None, scene, simp, legends))
    curves = None if is3d else _show_curves(bundle, scene, legends)

    _text(scene, view, _title(bundle, array, is3d), scene.title_font, "Title")
    _text(scene, mview, "Map (the same scene from above)", scene.font, "Map title")
    latent = ("latent 1", "latent 2", "latent 3" if is3d else "")
    _axes(mview, scene, latent, 4, 3)  # the face under the plane, its left and bottom edges labelled
    mview.AxesGrid.ShowGrid = 0
    mview.AxesGrid.UseCustomBounds = 1  # the plane's, not the glyphs' overhang
    mview.AxesGrid.CustomBounds = list(b)
    _plan_camera(mview, scene, b)
    _aim_landscape(scene, surf, simp, marked, curves, legends)
    _show_diagram(scene, dview, land, topo, lo, hi)
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
    """Render the landscape (built, or loaded from ``state``) to the PNG ``out``: the whole layout
    (3-D view, map, diagram), ``size`` pixels in all."""
    layout = simple.GetLayout(load_state(state, bundle) if state else build_landscape(bundle, size))
    layout.SetSize(*size)
    simple.SaveScreenshot(out, layout, ImageResolution=list(size), TransparentBackground=0, SeparatorWidth=2,
                          SeparatorColor=[0.85, 0.85, 0.85])
    return out


def save(bundle, out):
    """Build the landscape state on ``bundle`` and save it as ``.pvsm``, headed by a comment that
    lists the data files it reads (ParaView stores absolute paths) and how to open it on a copy
    (an XML comment: no double hyphen in it, so no command-line options spelled out)."""
    import re
    from xml.sax.saxutils import escape

    build_landscape(bundle)
    simple.SaveState(out)
    with open(out) as f:
        text = f.read()
    files = sorted(set(re.findall(r'<Property name="FileName"[^>]*>\s*<Element index="0" value="([^"]+)"', text)))
    note = ("<!-- Globscope's landscape state of " + escape(os.path.abspath(bundle)) + ".\n"
            "     It reads these files where they are (absolute paths):\n"
            + "".join(f"       {escape(p)}\n" for p in files)
            + "     On a copy of the bundle elsewhere: globscope paraview COPY, state option set to this file\n"
              "     or ParaView's File > Load State with 'Search files under specified directory' set to the copy,\n"
              "     after loading the Globscope plugin. -->\n")
    head, sep, rest = text.partition("?>\n") if text.startswith("<?xml") else ("", "", text)
    with open(out, "w") as f:
        f.write(head + sep + note + rest)
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
    # Run as the imported module, not as __main__: ParaView's programmable filters execute their
    # set-up in __main__'s namespace (numpy_interface's min, max, sum… over the builtins).
    import globscope_state

    from globscope.errors import GlobscopeError

    try:
        globscope_state.main()
    except GlobscopeError as e:  # the user's mistake: its message, not a traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
