"""Globscope's landscape as a ParaView Python state.

GUI: File > Load State… and pick this file (with ``GLOBSCOPE_BUNDLE`` set to the bundle, or
ParaView started in the bundle folder), or ``globscope paraview BUNDLE --state landscape_state.py``.
pvpython: ``globscope_state.load_state("landscape_state.py", bundle)``.
"""

import os
import sys

_dir = os.environ.get("GLOBSCOPE_STATE_DIR") or os.path.dirname(os.path.abspath(globals().get("__file__", ".")))
if _dir not in sys.path:
    sys.path.insert(0, _dir)

import globscope_state  # noqa: E402

globscope_state.build_landscape(os.environ.get("GLOBSCOPE_BUNDLE") or globals().get("data_directory") or os.getcwd())
