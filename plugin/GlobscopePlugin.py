"""Globscope's ParaView plugin entry file: Tools > Manage Plugins > Load New, ``LoadPlugin``,
``PV_PLUGIN_PATH`` or a plugin config XML all point here.

Only this file sits in the plugin folder (ParaView imports every ``.py`` it finds there); the
filters live in the ``python_filters`` package next to it (installed) or one folder up (source
checkout). On ParaView 5.11 with Python >= 3.11, ``compat/usercustomize.py`` (or an explicit
``globscope_pv_compat.install()``) must have run before ParaView imported its plugin loader.
"""

import os
import sys

paraview_plugin_name = "Globscope"
paraview_plugin_version = "0.1.0"

_here = os.path.dirname(os.path.abspath(__file__))
for _root in (_here, os.path.dirname(_here)):
    if os.path.isdir(os.path.join(_root, "python_filters")):
        if _root not in sys.path:
            sys.path.insert(0, _root)
        break

from python_filters.proxies import *  # noqa: E402,F401,F403 - ParaView collects the decorated proxies
