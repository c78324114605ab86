"""The ParaView GUI as a new user meets it: a brand-new profile, `globscope paraview BUNDLE
--screenshot PNG`; the picture is kept in runs/test-artifacts/gui.png."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_paraview

pytestmark = [pytest.mark.paraview, needs_paraview, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("paraview") is None or shutil.which("xwd") is None,
                                 reason="the ParaView GUI or xwd (x11-apps) not installed")]


def test_gui_opens_ready_on_a_fresh_profile(bundle, tmp_path, pv_cache):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GLOBSCOPE_CACHE": str(pv_cache)}
    env.pop("DISPLAY", None)
    shot = tmp_path / "gui.png"
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "globscope", "paraview", str(bundle), "--screenshot", str(shot),
                        "--size", "1280", "800"], env=env, capture_output=True, text=True, timeout=400)
    seconds = time.monotonic() - t
    assert r.returncode == 0 and shot.is_file(), (r.stdout + r.stderr)[-3000:]
    assert seconds < 300  # not waiting behind the modal welcome dialog until the timeout
    artefacts = Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"
    artefacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artefacts / "gui.png")
    # the user's own settings file is neither read nor written (ParaView keeps a separate "-dr" one)
    assert not list((home / ".config").glob("ParaView/ParaView*[0-9].ini"))
    png = read_png(shot)
    assert png.shape == (800, 1280, 3)
    # the landscape is drawn (viridis surface, coloured models), not an empty window behind a dialog
    right = png[150:, 320:]
    assert len(np.unique(right.reshape(-1, 3) // 16, axis=0)) > 60


def read_png(path) -> np.ndarray:
    """A PNG read back with VTK (the tests' own reader of pictures)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    r = vtkPNGReader()
    r.SetFileName(str(path))
    r.Update()
    img = r.GetOutput()
    w, h, _ = img.GetDimensions()
    return vtk_to_numpy(img.GetPointData().GetScalars())[:, :3].reshape(h, w, 3)[::-1]
