"""Globscope: a global view of the loss landscape of many neural networks.

The core package knows nothing of VTK or ParaView; it turns checkpoint sets into weight matrices,
fits invertible manifolds of them, evaluates loss fields and summarises them topologically.
"""

__version__ = "0.1.0"
