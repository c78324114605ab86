"""What the ParaView tests share besides the root conftest's fixtures (``bundle``, ``pv``): the
skip mark, the script header that loads Globscope's entry helper, the plugin file."""

from __future__ import annotations

import shutil

import pytest

from globscope.environment import paraview_side

needs_paraview = pytest.mark.skipif(shutil.which("pvpython") is None or shutil.which("pvbatch") is None,
                                    reason="ParaView (pvpython, pvbatch) not installed")
pytestmark = [pytest.mark.paraview, needs_paraview]


# the top of a script run in ParaView: Globscope's entry helper (on PYTHONPATH in pl.environment())
HOOK = """
import globscope_entry
globscope_entry.setup()
"""
PLUGIN = str(paraview_side().plugin / "GlobscopePlugin.py")
