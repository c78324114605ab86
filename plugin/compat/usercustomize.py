"""Globscope's ParaView 5.11 hook, loaded by Python's ``site`` module when this folder is on
PYTHONPATH (the GUI and ``PV_PLUGIN_PATH`` autoload, where no script of ours runs first).

Not ``sitecustomize``: Debian ships its own, which must keep working. If another
``usercustomize`` exists further down ``sys.path`` (the user's own), it is run too.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)
try:
    import globscope_pv_compat

    globscope_pv_compat.install()
except Exception as _e:  # never break the interpreter's start-up
    sys.stderr.write(f"globscope: ParaView compatibility hook not installed ({_e})\n")


def _chain():
    import importlib.machinery
    import importlib.util

    rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    spec = importlib.machinery.PathFinder.find_spec("usercustomize", rest)
    if spec is None or not spec.origin or os.path.dirname(os.path.abspath(spec.origin)) == _here:
        return
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)


try:
    _chain()
except Exception as _e:  # the user's hook failing must not stop ours
    sys.stderr.write(f"globscope: the next usercustomize failed ({_e})\n")
