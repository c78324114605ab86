"""Which topology engine a ParaView pipeline uses: native TTK when its plugin loads, else ours.

One decision, by capability, not by version string: try ``LoadDistributedPlugin('TopologyToolKit')``
and look for the proxies ``TTKPersistenceDiagram``, ``TTKTopologicalSimplificationByPersistence``
and ``TTKMergeTree`` (TTK >= 1.3) or ``TTKMergeandContourTreeFTM`` (TTK <= 1.2). The factory
functions here build the chosen filters with the same meaning (minimum-saddle pairs, join tree),
so states and scripts do not care which engine ran. ``GLOBSCOPE_TOPOLOGY_ENGINE=globscope``
forces our engine.

Needs a ParaView session (``paraview.simple``); importing this module does not load anything.
"""

from __future__ import annotations

from globscope.environment import get as env_get
from globscope.names import TreeType

MERGE_TREE_PROXIES = ("TTKMergeTree", "TTKMergeandContourTreeFTM")
REQUIRED = ("TTKPersistenceDiagram", "TTKTopologicalSimplificationByPersistence")

_info = None


def _has_proxy(name: str, group: str = "filters") -> bool:
    from paraview import servermanager as sm

    pxm = sm.vtkSMProxyManager.GetProxyManager().GetActiveSessionProxyManager()
    return pxm is not None and pxm.GetPrototypeProxy(group, name) is not None


def detect(refresh: bool = False) -> dict:
    """Load TTK if it can be loaded and report what it offers.

    Returns
    -------
    dict
        ``present`` (bool), ``merge_tree_proxy`` (name or None), ``proxies`` (the TTK proxies
        found), ``engine`` ("ttk" or "globscope"), ``error`` (why TTK is not used, if not).
    """
    global _info
    if _info is not None and not refresh:
        return _info
    from paraview import simple

    info = {"present": False, "merge_tree_proxy": None, "proxies": [], "engine": "globscope", "error": None}
    try:
        simple.LoadDistributedPlugin("TopologyToolKit", remote=False)
    except Exception as e:  # noqa: BLE001 - absent plugin: RuntimeError; broken one: anything
        info["error"] = f"TopologyToolKit plugin not loadable ({type(e).__name__}: {e})"
    found = [n for n in REQUIRED + MERGE_TREE_PROXIES if _has_proxy(n)]
    info["proxies"] = found
    info["merge_tree_proxy"] = next((n for n in MERGE_TREE_PROXIES if n in found), None)
    info["present"] = all(n in found for n in REQUIRED) and info["merge_tree_proxy"] is not None
    if info["present"] and env_get("GLOBSCOPE_TOPOLOGY_ENGINE", "auto") != "globscope":
        info["engine"] = "ttk"
        info["error"] = None
    elif info["present"]:
        info["error"] = "TTK present but GLOBSCOPE_TOPOLOGY_ENGINE=globscope"
    elif found and info["error"] is None:
        info["error"] = f"TTK incomplete: found only {found}"
    _info = info
    return info


def create(xml_name: str, inputs=(), group: str = "filters", registration_name: str | None = None, **props):
    """A registered pipeline proxy by its XML name (what ``paraview.simple``'s constructors do)."""
    from paraview import servermanager as sm
    from paraview import simple

    ctrl = sm.ParaViewPipelineController()
    px = sm._getPyProxy(sm.ProxyManager().SMProxyManager.NewProxy(group, xml_name))
    if px is None:
        raise RuntimeError(f"no proxy {group}/{xml_name}: is the plugin loaded?")
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


def _set_array(px, candidates, array: str) -> None:
    for name in candidates:
        if px.GetProperty(name) is not None:
            px.SetPropertyWithName(name, ["POINTS", array])
            return
    raise RuntimeError(f"{px.GetXMLName()}: none of the array properties {candidates}")


def _set_if(px, name, value) -> None:
    if px.GetProperty(name) is not None:
        px.SetPropertyWithName(name, value)


def persistence_diagram(source, array: str, name: str | None = None):
    """Minimum-saddle persistence diagram (TTK's layout from either engine)."""
    if detect()["engine"] == "ttk":
        px = create("TTKPersistenceDiagram", [source], registration_name=name)
        _set_array(px, ("ScalarField", "InputArray"), array)
        return px
    px = create("GlobscopePersistenceDiagram", [source], registration_name=name)
    _set_array(px, ("ScalarField",), array)
    return px


def simplification(source, array: str, threshold: float, absolute: bool, name: str | None = None):
    """Persistence simplification of minimum-saddle pairs below ``threshold``."""
    if detect()["engine"] == "ttk":
        px = create("TTKTopologicalSimplificationByPersistence", [source], registration_name=name)
        _set_array(px, ("InputArray", "ScalarField"), array)
        _set_if(px, "PairType", 0)
        px.SetPropertyWithName("PersistenceThreshold", threshold)
        _set_if(px, "ThresholdIsAbsolute", int(absolute))
        return px
    px = create("GlobscopeTopologicalSimplification", [source], registration_name=name)
    _set_array(px, ("ScalarField",), array)
    px.PersistenceThreshold = threshold
    px.ThresholdIsAbsolute = int(absolute)
    return px


def merge_tree(source, array: str, name: str | None = None):
    """Join tree: port 0 nodes, port 1 arcs, port 2 segmentation (``TreeType`` = Join Tree)."""
    info = detect()
    if info["engine"] == "ttk":
        px = create(info["merge_tree_proxy"], [source], registration_name=name)
        _set_array(px, ("ScalarField", "InputArray"), array)
        px.SetPropertyWithName("TreeType", int(TreeType.JOIN))
        return px
    px = create("GlobscopeMergeTree", [source], registration_name=name)
    _set_array(px, ("ScalarField",), array)
    px.TreeType = int(TreeType.JOIN)
    return px


__all__ = ["detect", "create", "persistence_diagram", "simplification", "merge_tree", "MERGE_TREE_PROXIES"]
