"""Run by ``paraview --script=gui_start.py`` (``globscope paraview BUNDLE``): apply the landscape
state to the bundle named by ``GLOBSCOPE_BUNDLE`` (a saved state ``GLOBSCOPE_STATE``, .pvsm or .py,
instead of building it, when set), then say so on stdout (``globscope paraview --screenshot``
waits for that line)."""

import os

import globscope_entry  # on PYTHONPATH: `globscope paraview` starts the GUI with Globscope's environment

globscope_entry.setup()

import globscope_state as gs  # noqa: E402
from paraview import simple  # noqa: E402

from globscope.environment import get as env_get  # noqa: E402
from globscope.paraview_launch import GUI_READY_MARK  # noqa: E402

bundle = env_get("GLOBSCOPE_BUNDLE") or os.getcwd()
state = env_get("GLOBSCOPE_STATE")
view = gs.load_state(state, bundle) if state else gs.build_landscape(bundle)
simple.SetActiveView(view)
simple.Render(view)
print(GUI_READY_MARK, flush=True)
