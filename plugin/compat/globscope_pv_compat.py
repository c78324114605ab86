"""ParaView 5.11 compatibility hook: ``inspect.getargspec`` for Python >= 3.11.

ParaView 5.11's ``paraview.detail.pythonalgorithm`` (the module that loads Python plugins) does
``from inspect import getargspec``, which Python 3.11 removed (ParaView 5.12 fixed it). The alias
must exist *before* that module is first imported, so :func:`install` puts a one-shot finder on
``sys.meta_path`` that looks at the module's source when it is about to be imported and adds the
alias only if the source uses ``getargspec`` and ``inspect`` lacks it. On ParaView 5.12+ (or on
Python < 3.11) it therefore does nothing.

Installed at the top of every pvpython/pvbatch entry point (``install()``) and, for the GUI and
``PV_PLUGIN_PATH`` autoload, through ``usercustomize.py`` in this folder (put it on PYTHONPATH).
No ParaView import happens here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import sys
from collections import namedtuple

TARGET = "paraview.detail.pythonalgorithm"
ArgSpec = namedtuple("ArgSpec", "args varargs keywords defaults")


def _getargspec(func):
    """The removed ``inspect.getargspec``, built on ``getfullargspec``."""
    s = inspect.getfullargspec(func)
    return ArgSpec(s.args, s.varargs, s.varkw, s.defaults)


def add_alias() -> bool:
    """Add ``inspect.getargspec`` when missing; True when it was added."""
    if hasattr(inspect, "getargspec"):
        return False
    inspect.getargspec = _getargspec
    return True


def _source_uses_getargspec(spec) -> bool:
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py"):
        return True  # no source to look at: assume the old module
    try:
        with open(origin, encoding="utf-8", errors="replace") as f:
            return "getargspec" in f.read()
    except OSError:
        return True


class _Finder(importlib.abc.MetaPathFinder):
    """Adds the alias just before ParaView's plugin loader module is imported, if it needs it."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and _source_uses_getargspec(spec):
            add_alias()
        return None  # the regular finders import the module


def installed() -> bool:
    return any(isinstance(f, _Finder) for f in sys.meta_path)


def install() -> None:
    """Idempotent. Safe before or after ``import paraview``; a no-op on ParaView >= 5.12."""
    if hasattr(inspect, "getargspec"):
        return
    if TARGET in sys.modules:
        return  # already imported (so it did not need the alias)
    if not installed():
        sys.meta_path.insert(0, _Finder())
