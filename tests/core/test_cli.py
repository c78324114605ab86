"""The command line: argument checks and errors that name the problem, without a traceback."""

import subprocess
import sys

import pytest


def globscope(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "globscope", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["landscape", "m.pt", "--resolution", "1", "--out", "o"], "--resolution: must be at least 2, got 1"),
    (["landscape", "m.pt", "--resolution", "8", "--chunk-points", "0", "--out", "o"],
     "--chunk-points: must be at least 1"),
    (["zoo", "digits-mlp", "--out", "o", "--epochs", "x"], "--epochs: 'x' is not an integer"),
    (["rebasin", "--pairs", "A-B", "--out", "o"], "--pairs A-B: a number of pairs to train"),
    (["connect", "set", "--dim", "2", "--manifold", "m.pt", "--out", "o"], "unrecognized arguments: --dim"),
])
def test_bad_arguments_are_refused_by_name(args, message, tmp_path):
    r = globscope(*args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_input_errors_name_the_file_without_a_traceback(tmp_path):
    r = globscope("fit", tmp_path / "nowhere", "--out", tmp_path / "m.pt")
    assert r.returncode == 2 and "nowhere: checkpoint set folder not found" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "m.pt").write_bytes(b"junk")
    r = globscope("landscape", tmp_path / "m.pt", "--resolution", "8", "--out", tmp_path / "o")
    assert r.returncode == 2 and "m.pt: not a readable Globscope manifold" in r.stderr
    r = globscope("topology", tmp_path / "missing.vti", "--out", tmp_path / "t")
    assert r.returncode == 2 and "missing.vti: file not found" in r.stderr
    r = globscope("validate", tmp_path)
    assert r.returncode == 2 and "not a bundle with a manifold and a landscape" in r.stderr


def test_paraview_programs_keep_the_users_plugin_path(monkeypatch):
    """A user's PV_PLUGIN_PATH (their TTK, say) stays, after Globscope's plugin folder."""
    from globscope import paraview_launch as pl
    from globscope.environment import paraview_side

    monkeypatch.setenv("PV_PLUGIN_PATH", "/opt/ttk/plugins/TopologyToolKit:/opt/other")
    env = pl.environment()
    assert env["PV_PLUGIN_PATH"].split(":") == [str(paraview_side().plugin), "/opt/ttk/plugins/TopologyToolKit",
                                                "/opt/other"]


def test_topology_engine_ttk_where_it_cannot_run_says_why(tmp_path, capsys):
    """--engine ttk refuses clearly where TTK cannot run (here: a 4-D .npz); auto falls back."""
    import json

    import numpy as np

    from globscope.cli import main

    np.savez(tmp_path / "f4.npz", f=np.random.default_rng(0).random((5, 4, 3, 3)))
    args = ["topology", str(tmp_path / "f4.npz"), "--array", "f", "--engine"]
    assert main([*args, "ttk", "--out", str(tmp_path / "a")]) != 0
    assert "f4.npz: native TTK reads VTK image data" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main([*args, "auto", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "topology.json").read_text())["engine"] == {"name": "globscope"}
