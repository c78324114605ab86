"""Where Globscope finds things: the environment variables it reads (all of them, here) and the
folders of its ParaView side, located through the installed packages.

=============================  ====================================================================
variable                       meaning
=============================  ====================================================================
``GLOBSCOPE_DATA_DIR``         downloaded data sets (MNIST); default ``$XDG_DATA_HOME/globscope``
                               (``~/.local/share/globscope``)
``GLOBSCOPE_CACHE``            the ParaView filters' fitted manifolds and landscapes; default
                               ``$XDG_CACHE_HOME/globscope/paraview`` (``~/.cache/…``)
``GLOBSCOPE_PLUGIN_DIR``       the folder of ``GlobscopePlugin.py`` (default: beside the installed
                               ``python_filters`` package)
``GLOBSCOPE_STATE_DIR``        the folder of the state scripts (``globscope_state.py``, …)
``PARAVIEW_BIN``               the folder of ``pvpython``, ``pvbatch`` and ``paraview`` (default: PATH)
``GLOBSCOPE_TOPOLOGY_ENGINE``  ``globscope`` forces Globscope's topology filters where TTK loads
``GLOBSCOPE_BUNDLE``           the bundle a state is built on (set by ``globscope paraview``)
``GLOBSCOPE_STATE``            a saved state (``.pvsm``/``.py``) the GUI loads instead of building one
``GLOBSCOPE_PYTHON``           the interpreter ParaView's Manifold filter fits in (set by the launcher)
``RANK``, ``WORLD_SIZE``,      torchrun's: ``globscope landscape`` shards its chunks over the ranks
``LOCAL_RANK``
=============================  ====================================================================

Threads follow ``OMP_NUM_THREADS`` as in PyTorch; ParaView programs started by Globscope get 1 on
machines of 2 cores or fewer (two spinning OpenMP pools slow small work down many times).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from globscope.errors import GlobscopeError

VARIABLES = ("GLOBSCOPE_DATA_DIR", "GLOBSCOPE_CACHE", "GLOBSCOPE_PLUGIN_DIR", "GLOBSCOPE_STATE_DIR", "PARAVIEW_BIN",
             "GLOBSCOPE_TOPOLOGY_ENGINE", "GLOBSCOPE_BUNDLE", "GLOBSCOPE_STATE", "GLOBSCOPE_PYTHON",
             "RANK", "WORLD_SIZE", "LOCAL_RANK")


def get(name: str, default: str | None = None) -> str | None:
    """The value of one of Globscope's variables (:data:`VARIABLES`); empty counts as unset."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of Globscope's environment variables")
    return os.environ.get(name) or default


def _xdg(kind: str, fallback: str) -> Path:
    return Path(os.environ.get(kind) or Path.home() / fallback)


def paraview_settings_dir() -> Path:
    """Where the user's own ParaView keeps its settings (``$XDG_CONFIG_HOME/ParaView``)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "ParaView"


def data_dir() -> Path:
    """Where downloaded data sets live (``make setup`` puts MNIST in ``mnist/`` there)."""
    return Path(get("GLOBSCOPE_DATA_DIR") or _xdg("XDG_DATA_HOME", ".local/share") / "globscope")


def cache_dir() -> Path:
    """Where the ParaView filters keep fitted manifolds and landscapes between executions and
    sessions (created on first use)."""
    d = Path(get("GLOBSCOPE_CACHE") or _xdg("XDG_CACHE_HOME", ".cache") / "globscope" / "paraview")
    d.mkdir(parents=True, exist_ok=True)
    return d


def package_root(name: str) -> Path | None:
    """The folder that holds the installed package ``name`` (what goes on ``PYTHONPATH`` for a
    Python that does not see this installation), or None when it is not installed. The package
    is located, not imported."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve().parent


@dataclass(frozen=True)
class ParaViewSide:
    """The folders of Globscope's ParaView side.

    Attributes
    ----------
    plugin : Path
        Holds ``GlobscopePlugin.py`` (and ``compat/``, the ParaView 5.11 hook).
    filters_root : Path
        Holds the ``python_filters`` package.
    states : Path
        Holds ``globscope_state.py`` and the other state scripts.
    core_root : Path
        Holds the ``globscope`` package.
    """

    plugin: Path
    filters_root: Path
    states: Path
    core_root: Path

    @property
    def compat(self) -> Path:
        return self.plugin / "compat"


def paraview_side() -> ParaViewSide:
    """Locate the ParaView side: the variables above override; else the folders beside the installed
    ``python_filters`` package, as a source checkout (``plugin/``, ``state_files/``) or the CMake
    install (the plugin folder itself, ``state_files/``) lays them out (the same two layouts
    ``plugin/compat/globscope_entry.py`` knows from inside ParaView)."""
    filters_root = package_root("python_filters")
    core_root = package_root("globscope")
    plugin = get("GLOBSCOPE_PLUGIN_DIR")
    states = get("GLOBSCOPE_STATE_DIR")
    if filters_root is not None:
        checkout = filters_root / "plugin"
        plugin = plugin or (checkout if (checkout / "GlobscopePlugin.py").is_file() else filters_root)
        states = states or filters_root / "state_files"
    if not plugin or not (Path(plugin) / "GlobscopePlugin.py").is_file():
        raise GlobscopeError(f"{plugin or 'the python_filters package'}: Globscope's ParaView plugin not found; "
                             "install the project (`make setup`) or set GLOBSCOPE_PLUGIN_DIR to the folder of "
                             "GlobscopePlugin.py")
    if not states or not (Path(states) / "globscope_state.py").is_file():
        raise GlobscopeError(f"{states}: Globscope's state scripts not found (set GLOBSCOPE_STATE_DIR)")
    plugin = Path(plugin).resolve()
    if filters_root is None:  # not installed here: the CMake layout holds it in the plugin folder
        filters_root = plugin if (plugin / "python_filters").is_dir() else plugin.parent
    return ParaViewSide(plugin=plugin, filters_root=filters_root, states=Path(states).resolve(), core_root=core_root)


__all__ = ["VARIABLES", "get", "data_dir", "cache_dir", "package_root", "ParaViewSide", "paraview_side",
           "paraview_settings_dir"]
