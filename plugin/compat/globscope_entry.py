"""Start-up of Globscope's entry points inside ParaView: the plugin file and the state scripts.

The one place that puts Globscope's folders on ``sys.path`` (library modules never do) and
installs the ParaView 5.11 compatibility hook. It knows the two layouts this folder lives in:

- a source checkout: ``plugin/compat`` (here), ``plugin/GlobscopePlugin.py``, ``python_filters/``,
  ``state_files/`` and ``src/globscope`` at the top;
- the CMake install: ``<plugin folder>/compat`` (here), ``GlobscopePlugin.py``, ``python_filters/``
  and ``state_files/`` in the plugin folder; the core installed into ParaView's Python.

Programs that Globscope starts (``globscope render``, ``globscope paraview``) get the same folders
through ``PYTHONPATH`` (:func:`globscope.paraview_launch.environment`); then :func:`setup` only
installs the hook.
"""

from __future__ import annotations

import importlib.util
import os
import sys

COMPAT = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.dirname(COMPAT)
PLUGIN_FILE = os.path.join(PLUGIN, "GlobscopePlugin.py")
# python_filters and state_files sit beside the plugin folder (checkout) or inside it (install);
# globscope.environment.paraview_side() knows the same two layouts, from the installed package's side
ROOT = os.path.dirname(PLUGIN) if os.path.isdir(os.path.join(os.path.dirname(PLUGIN), "python_filters")) else PLUGIN
STATES = os.path.join(ROOT, "state_files")


def _first(path: str) -> None:
    if path not in sys.path:
        sys.path.insert(0, path)


def setup() -> None:
    """Make ``python_filters``, the core and the state scripts importable (where they are not
    already) and install the ParaView 5.11 hook; idempotent. Call it before importing ``paraview``."""
    _first(COMPAT)
    import globscope_pv_compat

    globscope_pv_compat.install()
    if importlib.util.find_spec("python_filters") is None:
        _first(ROOT)
    if importlib.util.find_spec("globscope") is None and os.path.isdir(os.path.join(ROOT, "src", "globscope")):
        _first(os.path.join(ROOT, "src"))
    if os.path.isfile(os.path.join(STATES, "globscope_state.py")):
        _first(STATES)
