"""Globscope's ParaView plugin entry file: Tools > Manage Plugins > Load New, ``LoadPlugin``,
``PV_PLUGIN_PATH`` or a plugin config XML all point here.

Only this file sits in the plugin folder (ParaView imports every ``.py`` it finds there); the
filters live in the ``python_filters`` package. ``compat/globscope_entry.py`` makes them importable
and installs the ParaView 5.11 hook; on ParaView 5.11 with Python >= 3.11 that hook must be in place
before ParaView imports its plugin loader, which ``compat/usercustomize.py`` on ``PYTHONPATH`` does
(``globscope paraview`` sets it up).
"""

import os
import sys

paraview_plugin_name = "Globscope"
paraview_plugin_version = "0.1.0"

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat"))  # the entry helper
import globscope_entry  # noqa: E402

globscope_entry.setup()

from python_filters.proxies import *  # noqa: E402,F401,F403 - ParaView collects the decorated proxies
