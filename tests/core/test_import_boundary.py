"""The core never imports VTK or ParaView (DESIGN.md: core ← python_filters ← plugin)."""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "globscope"
FORBIDDEN = ("vtkmodules", "vtk", "paraview")


def test_no_source_file_imports_vtk_or_paraview():
    offenders = []
    for py in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{py.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('vtkmodules', 'vtk', 'paraview'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib, globscope
mods = [m.name for m in pkgutil.walk_packages(globscope.__path__, 'globscope.') if not m.name.endswith('__main__')]
for m in mods:
    importlib.import_module(m)
assert not any(k.split('.')[0] in ('vtkmodules', 'vtk', 'paraview') for k in sys.modules)
print(len(mods), 'modules imported')
"""


def test_every_core_module_imports_with_vtk_and_paraview_blocked():
    r = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "modules imported" in r.stdout
