"""Globscope's VTK layer: VTK algorithms wrapping the core, numpy<->VTK conversion, the
decorated ParaView proxies and native-TTK routing.

Modules: ``vtkconv`` (the one place numpy meets VTK), ``algorithms`` (undecorated
``VTKPythonAlgorithmBase`` filters, usable from plain ``vtkmodules``), ``proxies`` (thin
ParaView proxies; imports ``paraview``), ``ttk`` (which topology engine the pipeline uses).
"""

import os as _os
import sys as _sys

# Running from a source checkout: make the core importable without an installed package.
_src = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "src")
if _os.path.isdir(_os.path.join(_src, "globscope")) and _src not in _sys.path:
    try:
        import globscope as _g  # noqa: F401
    except ImportError:
        _sys.path.append(_src)

CATEGORY = "Globscope"
