"""Which topology engine a ParaView pipeline uses — native TTK when its plugin is loaded, else
Globscope's filters — and how to drive each TTK release with the same meaning.

Detection is by capability: the proxy manager knows TTK's filters by their XML names
(``ttkPersistenceDiagram``, ``ttkTopologicalSimplificationByPersistence``, ``ttkftmtree`` up to 1.2,
``ttkMergeTree`` from 1.3). TTK already loaded counts (``PV_PLUGIN_PATH`` autoload, the GUI's plugin
configuration); otherwise ``LoadDistributedPlugin('TopologyToolKit')`` is tried (official binaries
ship it). Which proxies and properties exist tells 1.1 / 1.2 / 1.3 apart; the plugin's own version
string is reported beside it.

``GLOBSCOPE_TOPOLOGY_ENGINE``: ``auto`` (default: TTK when found), ``ttk`` (TTK or an error),
``globscope`` (our filters even where TTK loads).

Needs a ParaView session (``paraview.simple``); importing this module loads nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from globscope.environment import get as env_get
from globscope.errors import GlobscopeError
from globscope.names import TOPOLOGY_ENGINES as ENGINES
from globscope.names import PairType, TreeType

DIAGRAM = "ttkPersistenceDiagram"
SIMPLIFICATION = "ttkTopologicalSimplificationByPersistence"
MERGE_TREES = ("ttkMergeTree", "ttkftmtree")  # 1.3, then <= 1.2
PLUGIN = "TopologyToolKit"


@dataclass(frozen=True)
class Route:
    """How one TTK release is driven: XML proxy and property names, and the property values that
    give Globscope's meaning (minimum-saddle pairs, join tree, threshold semantics).

    Sources: TTK's ``paraview/xmls/{PersistenceDiagram,TopologicalSimplificationByPersistence,
    FTMTree,MergeTree}.xml`` at tags 1.1.0 and 1.2.0 and the 1.3 development tree; 1.1.0 is also
    checked against the real plugin (``tests/ttk``).
    """

    version: str
    merge_tree: str
    # PersistenceDiagram.xml: 1.1.0 has no per-dimension switch (the diagram then holds every
    # dimension, and the minimum-saddle pairs are picked by PairType afterwards); 1.2.0 and 1.3
    # have DMSDimensions (1 = "Selected Dimensions (no infinite pairs)") and ComputeMinSad /
    # ComputeSadSad / ComputeSadMax.
    diagram_properties: tuple = ()
    # the array property of each filter, by XML name (identical in 1.1 to 1.3)
    diagram_array: str = "ScalarFieldNew"
    simplification_array: str = "InputArray"
    merge_tree_array: str = "Scalar Field"
    # TopologicalSimplificationByPersistence.xml, all three: PairType 0 Extremum-Saddle,
    # 1 Minimum-Saddle, 2 Maximum-Saddle; ThresholdIsAbsolute defaults to 1 in 1.1.0 and 0 from
    # 1.2.0, so it is always set. FTMTree.xml / MergeTree.xml: "Tree Type" 0 Join, 1 Split, 2 Contour
    # (the default).
    simplification_pair_type: int = 1
    tree_type: int = int(TreeType.JOIN)

    @property
    def diagram_has_all_dimensions(self) -> bool:
        return not self.diagram_properties


_MIN_SADDLE_ONLY = (("DMSDimensions", 1), ("ComputeMinSad", 1), ("ComputeSadSad", 0), ("ComputeSadMax", 0))
ROUTES = {
    "1.1": Route("1.1", "ttkftmtree"),
    "1.2": Route("1.2", "ttkftmtree", _MIN_SADDLE_ONLY),
    "1.3": Route("1.3", "ttkMergeTree", _MIN_SADDLE_ONLY),
}

_info = None


def _session_proxy_manager():
    from paraview import servermanager as sm

    return sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()


def _prototype(name: str, group: str = "filters"):
    pxm = _session_proxy_manager()
    return None if pxm is None else pxm.GetPrototypeProxy(group, name)


def plugin_version() -> str | None:
    """The version the loaded TopologyToolKit plugin declares (``"1.1"`` …), None if not loaded."""
    from paraview import servermanager as sm

    info = sm.vtkSMProxyManager.GetProxyManager().GetPluginManager().GetLocalInformation()
    for i in range(info.GetNumberOfPlugins()):
        if info.GetPluginName(i) == PLUGIN and info.GetPluginLoaded(i):
            return info.GetPluginVersion(i)
    return None


def release() -> str | None:
    """TTK's release family from the proxies registered now: "1.1", "1.2", "1.3" or None."""
    if _prototype(DIAGRAM) is None or _prototype(SIMPLIFICATION) is None:
        return None
    if _prototype("ttkMergeTree") is not None:
        return "1.3"
    if _prototype("ttkftmtree") is None:
        return None
    return "1.2" if _prototype(DIAGRAM).GetProperty("DMSDimensions") is not None else "1.1"


def detect(refresh: bool = False) -> dict:
    """Find TTK (loaded already, else loadable by name) and decide the engine.

    Returns
    -------
    dict
        ``present`` (bool), ``version`` (the route's release, "1.1"/"1.2"/"1.3"),
        ``plugin_version`` (what the plugin declares), ``proxies`` (TTK's XML names found),
        ``merge_tree_proxy``, ``engine`` ("ttk" or "globscope"), ``error`` (why not TTK, or None).
    """
    global _info
    if _info is not None and not refresh:
        return _info
    from paraview import simple

    wanted = env_get("GLOBSCOPE_TOPOLOGY_ENGINE", "auto") or "auto"
    if wanted not in ENGINES:
        raise GlobscopeError(f"GLOBSCOPE_TOPOLOGY_ENGINE={wanted!r}: choose one of {', '.join(ENGINES)}")
    error = None
    if release() is None:
        try:  # plugins ParaView knows by name (official binaries): not loaded yet
            simple.LoadDistributedPlugin(PLUGIN, remote=False)
        except Exception as e:  # noqa: BLE001 - absent plugin: RuntimeError; broken one: anything
            error = f"no {PLUGIN} plugin loaded or loadable ({type(e).__name__}: {e})"
    version = release()
    proxies = [n for n in (DIAGRAM, SIMPLIFICATION) + MERGE_TREES if _prototype(n) is not None]
    info = {"present": version is not None, "version": version, "plugin_version": plugin_version(),
            "proxies": proxies, "merge_tree_proxy": ROUTES[version].merge_tree if version else None,
            "engine": "globscope", "error": None}
    if version is None:
        info["error"] = f"TTK incomplete: found only {proxies}" if proxies else error
    elif wanted == "globscope":
        info["error"] = "TTK present but GLOBSCOPE_TOPOLOGY_ENGINE=globscope"
    else:
        info["engine"] = "ttk"
    if wanted == "ttk" and info["engine"] != "ttk":
        raise GlobscopeError(f"GLOBSCOPE_TOPOLOGY_ENGINE=ttk but TTK is not usable: {info['error']}")
    _info = info
    return info


def route() -> Route | None:
    """The routing entry of the TTK in use, None when Globscope's filters are used."""
    info = detect()
    return ROUTES[info["version"]] if info["engine"] == "ttk" else None


def create(xml_name: str, inputs=(), group: str = "filters", registration_name: str | None = None, **props):
    """A registered pipeline proxy by its XML name (what ``paraview.simple``'s constructors do)."""
    from paraview import servermanager as sm
    from paraview import simple

    ctrl = sm.ParaViewPipelineController()
    px = sm._getPyProxy(sm.ProxyManager().SMProxyManager.NewProxy(group, xml_name))
    if px is None:
        raise GlobscopeError(f"no proxy {group}/{xml_name}: is its plugin loaded?")
    ctrl.PreInitializeProxy(px)
    inputs = list(inputs)
    if inputs:
        px.Input = inputs[0]
    for k, v in props.items():
        px.SetPropertyWithName(k, v)
    ctrl.PostInitializeProxy(px)
    ctrl.RegisterPipelineProxy(px, registration_name)
    simple.SetActiveSource(px)
    return px


def _array(array: str) -> list:
    return ["POINTS", array]


def persistence_diagram(source, array: str, name: str | None = None):
    """Minimum-saddle persistence diagram in TTK's layout, from either engine.

    With TTK 1.1 (no per-dimension switch) a Threshold on ``PairType`` keeps the minimum-saddle
    pairs and the diagonal (``PairType`` -1).
    """
    r = route()
    if r is None:
        return create("GlobscopePersistenceDiagram", [source], registration_name=name,
                      ScalarField=_array(array))
    px = create(DIAGRAM, [source], registration_name=name if not r.diagram_has_all_dimensions else None,
                **{r.diagram_array: _array(array)}, **dict(r.diagram_properties))
    if not r.diagram_has_all_dimensions:
        return px
    from paraview import simple

    keep = simple.Threshold(registrationName=name, Input=px)
    keep.Scalars = ["CELLS", "PairType"]
    keep.LowerThreshold, keep.UpperThreshold = -1, int(PairType.MINIMUM_SADDLE)
    return keep


def simplification(source, array: str, threshold: float, absolute: bool, name: str | None = None):
    """Persistence simplification of the minimum-saddle pairs of persistence <= ``threshold`` (a
    fraction of the array's range unless ``absolute``, as in both engines)."""
    r = route()
    if r is None:
        return create("GlobscopeTopologicalSimplification", [source], registration_name=name,
                      ScalarField=_array(array), PersistenceThreshold=float(threshold),
                      ThresholdIsAbsolute=int(absolute))
    return create(SIMPLIFICATION, [source], registration_name=name, **{r.simplification_array: _array(array)},
                  PairType=r.simplification_pair_type, PersistenceThreshold=float(threshold),
                  ThresholdIsAbsolute=int(absolute))


def merge_tree(source, array: str, name: str | None = None):
    """Join tree: port 0 nodes, port 1 arcs, port 2 segmentation."""
    r = route()
    if r is None:
        return create("GlobscopeMergeTree", [source], registration_name=name, ScalarField=_array(array),
                      TreeType=int(TreeType.JOIN))
    return create(r.merge_tree, [source], registration_name=name, **{r.merge_tree_array: _array(array),
                                                                     "Tree Type": r.tree_type})


# -- the CLI's TTK engine: run native TTK on a field file, hand every output back as arrays --------
def _fetch(px, port: int = 0):
    from paraview import servermanager as sm

    return sm.Fetch(px, idx=port)


def _attributes(prefix: str, ds, out: dict) -> None:
    from python_filters import vtkconv as vc

    for kind, att in (("point", ds.GetPointData()), ("cell", ds.GetCellData())):
        for i in range(att.GetNumberOfArrays()):
            a = att.GetArray(i)
            if a is not None:
                out[f"{prefix}/{kind}/{a.GetName()}"] = vc.from_vtk_array(a)


def _cells(ds):
    import numpy as np
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if not hasattr(ds, "GetCells") or ds.GetNumberOfCells() == 0:
        return np.zeros((0, 2), np.int64)
    conn = vtk_to_numpy(ds.GetCells().GetConnectivityArray()).astype(np.int64)
    offs = vtk_to_numpy(ds.GetCells().GetOffsetsArray()).astype(np.int64)
    if not np.all(np.diff(offs) == 2):
        raise GlobscopeError("TTK output with cells other than lines: set no arc sampling")
    return conn.reshape(-1, 2)


def native_topology(field_file: str, array: str, persistence: float, absolute: bool) -> dict:
    """Run native TTK on a ``.vti`` field as ``globscope topology`` does with its own engine.

    The persistence diagram of the input, the simplification, then the diagram and the join tree
    of the simplified field (which TTK orders by the ``<array>_Order`` array the simplification
    adds). Returns ``name -> ndarray``: ``{diagram_in,diagram_out,simplified,nodes,arcs,
    segmentation}/{point,cell}/<array>``, ``{diagram_in,diagram_out,arcs}/cells`` (point ids of each
    line, shape (n, 2)), ``seconds/<step>`` (TTK's time in each filter) and ``route/version``.
    """
    import numpy as np
    from paraview import simple

    info = detect()
    if info["engine"] != "ttk":
        raise GlobscopeError(f"native TTK asked for, but it is not in use: {info['error']}")
    r = ROUTES[info["version"]]
    reader = simple.XMLImageDataReader(FileName=[str(field_file)])
    reader.UpdatePipeline()
    if reader.PointData[array] is None:
        raise GlobscopeError(f"{field_file}: no point array {array!r}")
    out = {"route/version": np.array(r.version), "route/plugin_version": np.array(info["plugin_version"] or "")}

    def run(step, px, ports=(0,)):
        t = time.perf_counter()
        px.UpdatePipeline()
        out[f"seconds/{step}"] = np.array(time.perf_counter() - t)
        return [_fetch(px, p) for p in ports]

    (d_in,) = run("diagram_input", persistence_diagram(reader, array))
    simp_px = simplification(reader, array, persistence, absolute)
    (simp,) = run("simplification", simp_px)
    nodes, arcs, seg = run("join_tree", merge_tree(simp_px, array), ports=(0, 1, 2))
    (d_out,) = run("diagram_simplified", persistence_diagram(simp_px, array))
    for prefix, ds in (("diagram_in", d_in), ("diagram_out", d_out), ("simplified", simp), ("nodes", nodes),
                       ("arcs", arcs), ("segmentation", seg)):
        _attributes(prefix, ds, out)
    for prefix, ds in (("diagram_in", d_in), ("diagram_out", d_out), ("arcs", arcs)):
        out[f"{prefix}/cells"] = _cells(ds)
    return out


__all__ = ["Route", "ROUTES", "ENGINES", "detect", "route", "release", "plugin_version", "create",
           "persistence_diagram", "simplification", "merge_tree", "native_topology"]
