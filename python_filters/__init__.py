"""Globscope's VTK layer: VTK algorithms wrapping the core, numpy<->VTK conversion, the
decorated ParaView proxies and native-TTK routing.

Modules: ``vtkconv`` (the one place numpy meets VTK), ``algorithms`` (undecorated
``VTKPythonAlgorithmBase`` filters, usable from plain ``vtkmodules``), ``proxies`` (thin
ParaView proxies; imports ``paraview``), ``ttk`` (which topology engine the pipeline uses).
"""

CATEGORY = "Globscope"
