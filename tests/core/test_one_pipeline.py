"""One pipeline: the faces share the stages, their defaults, names and codes, and error model."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from globscope import environment, stages
from globscope.errors import GlobscopeError
from globscope.names import BN_MODES, DEVICES, MANIFOLD_METHODS, Choices, CriticalType, RegionType
from globscope.settings import DemoSettings, FitSettings, LandscapeSettings, TopologySettings, ZooSettings
from globscope.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = [ROOT / "src" / "globscope", ROOT / "python_filters"]


def globscope(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "globscope", "--no-progress", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


# -- defaults and records -------------------------------------------------------------------------
def test_cli_options_left_unset_give_the_settings_defaults(tmp_path):
    """`globscope topology` and `globscope landscape` without options record exactly the settings'
    defaults in their JSON (one default per setting, whichever face runs the stage)."""
    from globscope.vtkxml import write_image_data

    x = np.linspace(-1, 1, 12)
    F = np.add.outer(x ** 2, x ** 2)
    write_image_data(tmp_path / "f.vti", {"log_loss": F})
    r = globscope("topology", tmp_path / "f.vti", "--out", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "t" / "topology.json").read_text())["settings"] == TopologySettings().to_dict()
    assert stages.recorded_topology_settings(tmp_path) == TopologySettings()  # no topology/: the defaults
    (tmp_path / "topology").mkdir()
    record = tmp_path / "topology" / "topology.json"
    record.write_text(json.dumps({"settings": {"array": "loss", "persistence": 0.2}}))
    assert stages.recorded_topology_settings(tmp_path) == TopologySettings(array="loss", persistence=0.2)
    record.write_text("{ damaged")
    with pytest.raises(GlobscopeError, match="topology.json: unreadable topology record"):
        stages.recorded_topology_settings(tmp_path)


def test_settings_take_a_choice_by_name_or_code():
    """ParaView hands the proxies' codes over; the settings keep the name (what a record shows)."""
    assert FitSettings(method=1).method == "pca" and LandscapeSettings(bn=1).bn == "reference"
    assert FitSettings(method=1) == FitSettings(method="pca")


def test_demo_defaults_are_the_stage_defaults():
    d = DemoSettings()
    assert (d.zoo, d.fit, d.landscape, d.topology) == (ZooSettings(), FitSettings(), LandscapeSettings(),
                                                        TopologySettings())
    assert DemoSettings.from_dict(json.loads(json.dumps(d.to_dict()))) == d


@pytest.mark.parametrize("make, message", [
    (lambda: ZooSettings(n_variants=27), "at most 26 variants"),
    (lambda: FitSettings(dim=5), "latent dimension"),
    (lambda: FitSettings(method="tsne"), "unknown manifold method 'tsne'"),
    (lambda: LandscapeSettings(resolution=1), "resolution"),
    (lambda: LandscapeSettings(bn="batch"), "unknown BatchNorm mode"),
    (lambda: TopologySettings(persistence=1.5), "persistence must be a fraction"),
])
def test_settings_check_themselves(make, message):
    with pytest.raises(GlobscopeError, match=message):
        make()


def test_choice_codes_never_change():
    """ParaView states store these codes: a new choice gets a new code, old ones keep their meaning."""
    assert MANIFOLD_METHODS.codes == {"autoencoder": 0, "pca": 1, "kernel-pca": 2, "umap": 3}
    assert BN_MODES.codes == {"recompute": 0, "reference": 1}
    assert DEVICES.codes == {"auto": 0, "cpu": 1, "cuda": 2}
    later = Choices("method", {**MANIFOLD_METHODS.codes, "isomap": 4})
    assert later.name(2) == MANIFOLD_METHODS.name(2) == "kernel-pca" and later.name("umap") == "umap"
    assert [int(t) for t in CriticalType] == [0, 1, 2, 3, 4, 5] and int(RegionType.SADDLE1_ARC) == 2
    from globscope.manifolds import METHODS

    assert set(METHODS) == set(MANIFOLD_METHODS.names)


# -- manifold metadata ----------------------------------------------------------------------------
def _lightning_set(root: Path, n_runs=2, n_epochs=3):
    """A PyTorch Lightning-style folder: `{"state_dict": {"model.<key>": …}}` per checkpoint."""
    task = get_task("digits-mlp")
    torch.manual_seed(0)
    for r in range(n_runs):
        net = task.make_model()
        for e in range(n_epochs):
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.2 * torch.randn_like(p))
            (root / f"run{r}").mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": e, "global_step": 10 * e,
                        "state_dict": {f"model.{k}": v.clone() for k, v in net.state_dict().items()}},
                       root / f"run{r}" / f"epoch_{e}.ckpt")
    return root


def test_a_manifold_fitted_with_a_prefix_makes_a_landscape(tmp_path):
    """The key prefix a set was read with is recorded in the manifold and used again."""
    data = _lightning_set(tmp_path / "runs")
    r = globscope("fit", data, "--task", "digits-mlp", "--prefix", "model.", "--method", "pca",
                  "--out", tmp_path / "m.pt")
    assert r.returncode == 0, r.stderr
    assert not (data / "manifest.json").exists()  # indexed in memory, the user's folder untouched
    r = globscope("landscape", tmp_path / "m.pt", "--resolution", "5", "--out", tmp_path / "field")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "field" / "landscape.json").read_text())
    assert summary["n_models"] == 6 and summary["settings"]["resolution"] == 5
    assert summary["manifold"] == str((tmp_path / "m.pt").resolve())


def test_manifold_meta_is_relative_below_the_file_and_absolute_elsewhere(digits_zoo, tmp_path):
    models = stages.load_models(digits_zoo)
    inside = stages.manifold_meta(models, digits_zoo.root.parent / "m.pt")
    assert inside["checkpoint_set"] == digits_zoo.root.name and inside["task"] == "digits-mlp"
    assert inside["prefix"] is None and inside["layout"] == models.layout.to_dict()
    assert stages.manifold_meta(models, tmp_path / "m.pt")["checkpoint_set"] == str(digits_zoo.root.resolve())


def test_a_set_naming_several_tasks_needs_a_choice(digits_zoo, tmp_path):
    cs = stages.open_set(digits_zoo.root)
    cs.checkpoints[0].task = "fashion-mlp"
    with pytest.raises(GlobscopeError, match="names several tasks .*digits-mlp.*choose one"):
        stages.load_models(cs)
    assert stages.load_models(cs, "digits-mlp").task_name == "digits-mlp"


# -- errors ---------------------------------------------------------------------------------------
def test_too_many_variants_is_one_line(tmp_path):
    r = globscope("zoo", "digits-mlp", "--variants", "27", "--out", tmp_path / "z")
    assert r.returncode == 2 and "--variants: must be at most 26, got 27" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_raising_user_task_is_one_line(tmp_path):
    (tmp_path / "mytasks.py").write_text("def broken():\n    raise ValueError('no data here')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    r = globscope("zoo", "mytasks:broken", "--out", tmp_path / "z", env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("globscope: error: task 'mytasks:broken': broken() raised ValueError: "
                                "no data here")
    r = globscope("-v", "zoo", "mytasks:broken", "--out", tmp_path / "z", env=env)  # -v shows the cause
    assert "Traceback" in r.stderr and "ValueError: no data here" in r.stderr
    r = globscope("zoo", "mytasks:nothing", "--out", tmp_path / "z", env=env)
    assert r.returncode == 2 and "has no callable 'nothing'" in r.stderr and "Traceback" not in r.stderr


# -- one place for paths, variables, grids ----------------------------------------------------------
def _python_files(folders):
    for folder in folders:
        yield from sorted(folder.rglob("*.py"))


def test_library_modules_never_touch_sys_path():
    offenders = [str(p.relative_to(ROOT)) for p in _python_files(LIBRARIES) if "sys.path" in p.read_text()]
    assert offenders == []


def test_library_modules_never_derive_paths_from_their_location():
    pattern = re.compile(r"parents\[\d\]|__file__\)\.parent")
    offenders = [str(p.relative_to(ROOT)) for p in _python_files(LIBRARIES) if pattern.search(p.read_text())]
    assert offenders == []


# variables of other programs that Globscope reads or passes on
FOREIGN = {"DISPLAY", "WAYLAND_DISPLAY", "XDG_DATA_HOME", "XDG_CACHE_HOME"}


def _variables_read(path: Path) -> set:
    """Names in ``os.environ.get("X")``, ``os.environ["X"]``, ``os.getenv("X")`` and ``env_get("X")``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = ast.unparse(node.func)
            if f in ("os.environ.get", "os.getenv", "env_get", "environment.get", "get") and \
                    isinstance(node.args[0].value, str) and node.args[0].value.isupper():
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and \
                isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def test_every_environment_variable_is_declared_and_documented():
    folders = LIBRARIES + [ROOT / "state_files", ROOT / "plugin"]
    read = set().union(*(_variables_read(p) for p in _python_files(folders))) - FOREIGN
    assert read <= set(environment.VARIABLES), read - set(environment.VARIABLES)
    docs = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "README.md").read_text()
    assert [v for v in environment.VARIABLES if v not in docs] == []
    assert [v for v in environment.VARIABLES if v not in environment.__doc__] == []
    with pytest.raises(KeyError):
        environment.get("GLOBSCOPE_NOT_A_VARIABLE")


def test_paraview_side_is_found_through_the_installed_packages():
    side = environment.paraview_side()
    assert (side.plugin / "GlobscopePlugin.py").is_file() and (side.compat / "globscope_entry.py").is_file()
    assert (side.filters_root / "python_filters" / "__init__.py").is_file()
    assert (side.states / "globscope_state.py").is_file() and (side.core_root / "globscope").is_dir()


def test_the_point_order_rule_is_stated_once():
    """`order="F"` (the x-fastest rule) appears in globscope.grid only."""
    offenders = [str(p.relative_to(ROOT)) for p in _python_files(LIBRARIES)
                 if 'order="F"' in p.read_text() and p != ROOT / "src" / "globscope" / "grid.py"]
    assert offenders == []
