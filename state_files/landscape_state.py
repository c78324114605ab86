"""Globscope's landscape as a ParaView Python state.

GUI: load the Globscope plugin (or start with ``globscope paraview``), then File > Load State… and
pick this file (with ``GLOBSCOPE_BUNDLE`` set to the bundle, or ParaView started in the bundle
folder), or ``globscope paraview BUNDLE --state landscape_state.py``.
pvpython: ``globscope_state.load_state("landscape_state.py", bundle)``.
"""

import os

import globscope_entry  # importable once the plugin is loaded, or in programs `globscope` starts

globscope_entry.setup()

import globscope_state  # noqa: E402

from globscope.environment import get as env_get  # noqa: E402

globscope_state.build_landscape(env_get("GLOBSCOPE_BUNDLE") or globals().get("data_directory") or os.getcwd())
