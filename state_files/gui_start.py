"""Run by ``paraview --script=gui_start.py`` (``globscope paraview BUNDLE``): apply the landscape
state to the bundle named by ``GLOBSCOPE_BUNDLE`` (a saved state ``GLOBSCOPE_STATE``, .pvsm or .py,
instead of building it, when set). With ``GLOBSCOPE_SCREENSHOT`` a screenshot of the landscape
layout (its three views) is written there (the GUI test)."""

import os
import sys

import globscope_entry  # on PYTHONPATH: `globscope paraview` starts the GUI with Globscope's environment

globscope_entry.setup()

import globscope_state as gs  # noqa: E402
from paraview import simple  # noqa: E402

from globscope.environment import get as env_get  # noqa: E402

bundle = env_get("GLOBSCOPE_BUNDLE") or os.getcwd()
state = env_get("GLOBSCOPE_STATE")
view = gs.load_state(state, bundle) if state else gs.build_landscape(bundle)
simple.SetActiveView(view)
simple.Render(view)
shot = env_get("GLOBSCOPE_SCREENSHOT")
if shot:
    # at the layout's own size: what the window shows (a resampled layout keeps its axes' labels
    # at their size while the rest scales)
    simple.SaveScreenshot(shot, simple.GetLayout(view))
if env_get("GLOBSCOPE_EXIT_AFTER_SCRIPT"):  # tests: leave once the screenshot is written
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
