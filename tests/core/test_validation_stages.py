"""The validation stages on a small real bundle: mode connectivity (projected, measured), saddle
paths, the report, and the re-basin experiment — numbers checked a second, simpler way."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from globscope import stages, vtkxml
from globscope.bundle import write_model_points
from globscope.errors import GlobscopeError
from globscope.settings import (
    ConnectSettings,
    FitSettings,
    LandscapeSettings,
    PathSettings,
    RebasinSettings,
    TopologySettings,
)

FAST_CURVES = ConnectSettings(steps=40, points=5)


@pytest.fixture(scope="module")
def bundle(digits_zoo, tmp_path_factory):
    """A bundle as the demo lays it out: PCA as its manifold, UMAP-free baselines in manifolds/."""
    root = tmp_path_factory.mktemp("vbundle")
    models = stages.load_models(digits_zoo)
    man = stages.fit(models, FitSettings(method="pca"), out=root / "manifold.pt")
    stages.fit(models, FitSettings(method="kernel-pca"), out=root / "manifolds" / "kernel-pca.pt")
    Z, errors = stages.project(man, models)
    write_model_points(root / "models.vtp", Z, digits_zoo, errors)
    stages.landscape(root / "manifold.pt", root, LandscapeSettings(resolution=20, margin=0.3))
    stages.topology(root / "landscape.vti", root / "topology", TopologySettings(persistence=0.0))
    return root


def test_connect_measures_the_curves_and_their_projections(bundle, digits_zoo, tmp_path):
    from globscope.validation.connect import connect, landscapes

    models = stages.load_models(digits_zoo)
    lands = landscapes([bundle / "manifold.pt", bundle / "manifolds" / "kernel-pca.pt"], models,
                       tmp_path / "fields", LandscapeSettings(resolution=8))
    assert [land.name for land in lands] == ["pca", "kernel-pca"]
    assert not (tmp_path / "fields" / "pca").exists()  # the bundle's own field was found beside it
    assert lands[0].grid.shape == (20, 20)
    assert (tmp_path / "fields" / "kernel-pca" / "landscape.vti").is_file()  # the other one computed
    report = connect(models, lands, tmp_path / "v", FAST_CURVES)
    assert list(report["pairs"]) == ["C-A", "C-B"]  # the last run is the hub
    task = models.task
    for name, p in report["pairs"].items():
        hub, other = name.split("-")
        # the ends are the final checkpoints: their real loss, evaluated here by hand
        for end, run in ((0, hub), (-1, other)):
            net = task.make_model()
            net.load_state_dict(digits_zoo.state_dict(digits_zoo.run_indices(run)[-1]))
            assert p["real_loss"][end] == pytest.approx(task.evaluate(net)[0], rel=1e-5)
        assert p["t"] == pytest.approx(np.linspace(0, 1, 5).tolist())
        for land in lands:
            q = p["manifolds"][land.name]
            d = np.abs(np.array(q["landscape_loss"], dtype=float) - np.array(p["real_loss"]))
            assert q["mae"] == pytest.approx(np.nanmean(d)) and q["n_outside"] == int(np.isnan(d).sum())
            # at t = 0 the projection is the hub's final model, read off its field by hand
            hub_w = models.W[digits_zoo.run_indices(hub)[-1]][None]
            by_hand = land.grid.interpolate(land.loss, land.manifold.transform(hub_w), outside="nan")[0]
            assert q["landscape_loss"][0] == pytest.approx(by_hand, rel=1e-5, nan_ok=True)  # float32 encoding
    # curves.safetensors: (3, D) per pair, the ends equal to the checkpoints' flat vectors
    tensors = load_file(tmp_path / "v" / "curves.safetensors")
    W = models.W
    c = tensors["C-A"]
    assert c.shape == (3, W.shape[1])
    assert torch.equal(c[0], torch.from_numpy(W[digits_zoo.run_indices("C")[-1]]))
    assert torch.equal(c[2], torch.from_numpy(W[digits_zoo.run_indices("A")[-1]]))
    vtp = vtkxml.read(tmp_path / "v" / "curves.vtp")
    assert len(vtp.cells["Lines"]["offsets"]) == 4  # 2 pairs × 2 manifolds
    assert set(vtp.cell_data["manifold"]) == {"pca", "kernel-pca"}
    rows = (tmp_path / "v" / "connectivity.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("pair,manifold,curve_loss_min")


def test_manifolds_are_named_by_method_else_by_file(bundle, tmp_path):
    import shutil

    from globscope.validation.connect import landscape_names

    other = tmp_path / "pca-again.pt"
    shutil.copy(bundle / "manifold.pt", other)
    kpca = bundle / "manifolds" / "kernel-pca.pt"
    assert landscape_names([bundle / "manifold.pt", kpca]) == ["pca", "kernel-pca"]
    assert landscape_names([bundle / "manifold.pt", other]) == ["manifold", "pca-again"]
    (tmp_path / "b").mkdir()
    shutil.copy(bundle / "manifold.pt", tmp_path / "b" / "manifold.pt")
    with pytest.raises(GlobscopeError, match="two share a method and a file name"):
        landscape_names([bundle / "manifold.pt", tmp_path / "b" / "manifold.pt"])


def test_pairs_name_runs(bundle, digits_zoo, tmp_path):
    from globscope.validation.connect import choose_pairs

    cs = digits_zoo
    assert choose_pairs(cs, ConnectSettings(pairs="A-B,C-A")) == [("A", "B"), ("C", "A")]
    assert choose_pairs(cs, ConnectSettings(hub="A")) == [("A", "B"), ("A", "C")]
    with pytest.raises(GlobscopeError, match="pair 'A-Z'"):
        choose_pairs(cs, ConnectSettings(pairs="A-Z"))
    with pytest.raises(GlobscopeError, match="hub 'Q'"):
        choose_pairs(cs, ConnectSettings(hub="Q"))


def test_saddle_paths_pass_the_saddles_and_are_real(bundle, digits_zoo, tmp_path):
    from globscope.manifolds import load_manifold
    from globscope.topology import analyze
    from globscope.topology.export import read_grid_field
    from globscope.validation.paths import saddle_paths

    field = read_grid_field(bundle / "landscape.vti", "log_loss")
    result = analyze(field.values)
    rep = saddle_paths(load_manifold(bundle / "manifold.pt"), stages.load_models(digits_zoo).task, field, result,
                       0.0, tmp_path, PathSettings(samples_per_edge=2))
    assert len(rep["paths"]) == int(result.pairs.is_finite.sum()) > 0
    flat_log = field.values.ravel(order="F")
    flat_loss = field.arrays["loss"].ravel(order="F")
    for p in rep["paths"]:
        v = np.array(p["vertices"])
        assert v[0] == p["minimum"] and v[-1] == p["elder"]
        assert v[np.argmax(flat_log[v])] == p["saddle"]  # the highest vertex is the join saddle
        # every second sample is a grid vertex: there the landscape is the field, and the field is
        # the real loss of the decoded weights
        at_vertices = np.array(p["landscape_loss"])[::2]
        assert at_vertices == pytest.approx(flat_loss[v], rel=1e-12)
        assert np.array(p["decoded_loss"])[::2] == pytest.approx(flat_loss[v], rel=1e-4)
        assert p["t"][0] == 0 and p["t"][-1] == 1 and np.all(np.diff(p["t"]) > 0)
    assert (tmp_path / "paths.json").is_file() and (tmp_path / "paths.vtp").is_file()


def test_validate_writes_the_report(bundle):
    from globscope.validation.report import validate

    rec = validate(bundle, FAST_CURVES.replace(resolution=8))
    assert set(rec["connectivity"]["median_mae"]) == {"pca", "kernel-pca"}
    report = (bundle / "validation" / "report.md").read_text()
    assert "| C-A | pca |" in report and "## Saddle paths" in report
    for f in rec["files"]:
        assert (bundle / "validation" / f).is_file(), f
    assert json.loads((bundle / "validation.json").read_text())["settings"]["connect"]["points"] == 5


def test_validate_needs_a_bundle(tmp_path):
    from globscope.validation.report import validate

    with pytest.raises(GlobscopeError, match="not a bundle"):
        validate(tmp_path)


def test_rebasin_experiment_on_two_pairs(tmp_path):
    """Two pairs of digits MLPs: the permuted networks compute the same functions, their straight
    lines to the partners lose most of their barrier, and the files hold what the report says."""
    from globscope.validation.rebasin_experiment import rebasin_experiment

    r = rebasin_experiment(tmp_path, RebasinSettings(task="digits-mlp", pairs=2, epochs=4, checkpoint_every=2),
                           fit=FitSettings(method="pca"), landscape=LandscapeSettings(resolution=24))
    assert r["n_pairs"] == 2 and r["n_models"] == 12 and r["max_output_diff"] < 1e-4
    # each final model's basin, found a second way: the lowest vertex of the simplified field (ties
    # to the lower id) in the segment of the model's nearest grid vertex, when that is a minimum
    from globscope.manifolds import load_manifold
    from globscope.topology.export import read_grid_field

    joint = stages.open_set(tmp_path)
    Z = load_manifold(tmp_path / "manifold.pt").transform(stages.load_models(joint).W)
    seg = read_grid_field(tmp_path / "topology" / "topology.vti", "SegmentationId")
    low_field = read_grid_field(tmp_path / "topology" / "topology.vti", "log_loss_simplified").values.ravel(order="F")
    seg_ids = seg.values.ravel(order="F")
    nodes = np.loadtxt(tmp_path / "topology" / "merge_tree_nodes.csv", delimiter=",", skiprows=1, ndmin=2)
    minima = {int(v) for v, kind in nodes[:, [1, 3]] if kind == 0}

    def basin(run):
        vid, inside = seg.grid.nearest_vertex(Z[[joint.run_indices(run)[-1]]])
        if not inside[0]:
            return None
        members = np.flatnonzero(seg_ids == seg_ids[vid[0]])
        low = int(members[np.argmin(low_field[members])])
        return low if low in minima else None

    for row in r["pairs"]:
        assert row["distance_after"] < row["distance_before"]
        assert row["barrier_after"] < row["barrier_before"]
        assert [row["basin_a"], row["basin_b"], row["basin_rebasined"]] == [
            basin(row["a"]), basin(row["b"]), basin(row["run"])]
        assert row["rebasined_in_partner_basin"] == (row["basin_a"] is not None
                                                     and row["basin_rebasined"] == row["basin_a"])
    assert r["partner_basin_rate"] == sum(x["rebasined_in_partner_basin"] for x in r["pairs"]) / 2
    # the re-basined trajectory: one file per checkpoint of B, read back through the checkpoint reader
    assert joint.runs == ["a00", "b00", "a01", "b01", "b00@a00", "b01@a01"]
    assert [c.epoch for c in joint.checkpoints if c.run == "b00@a00"] == [2, 4]
    vtp = vtkxml.read(tmp_path / "rebasin.vtp")
    assert sorted(set(vtp.point_data["role"].tolist())) == [0, 1, 2]
    assert math.isclose(r["median_barrier_after"], float(np.median([x["barrier_after"] for x in r["pairs"]])))
    # a rerun at another threshold reuses the re-basined models and the manifold, and only
    # re-reads the basins
    from globscope.validation.rebasin_experiment import RECORD

    manifold_bytes = (tmp_path / "manifold.pt").read_bytes()
    r2 = rebasin_experiment(tmp_path, RebasinSettings(task="digits-mlp", pairs=2, epochs=4, checkpoint_every=2),
                            fit=FitSettings(method="pca"), landscape=LandscapeSettings(resolution=24),
                            topology=TopologySettings(persistence=0.3))
    done = json.loads((tmp_path / RECORD).read_text())["stages"]
    assert done["rebasin"]["reused"] and done["manifold"]["reused"]
    assert (tmp_path / "manifold.pt").read_bytes() == manifold_bytes
    assert r2["n_basins"] <= r["n_basins"] and r2["topology"]["persistence"] == 0.3
    # the same models, so the same barriers; to float32 rounding, since the engine's ``auto`` choice
    # (timed on a shared machine) may sum the loss in another order
    np.testing.assert_allclose([x["barrier_after"] for x in r2["pairs"]], [x["barrier_after"] for x in r["pairs"]],
                               rtol=1e-5, atol=1e-6)
    # a rerun with other training settings refuses the models already there instead of using them
    from globscope.validation.rebasin_experiment import trained_pairs

    with pytest.raises(GlobscopeError, match="these models were trained with"):
        trained_pairs(RebasinSettings(task="digits-mlp", pairs=2, epochs=5, checkpoint_every=2), tmp_path)
    cs, pairs = trained_pairs(RebasinSettings(task="digits-mlp", pairs=2, epochs=4, checkpoint_every=2), tmp_path)
    assert pairs == [("a00", "b00"), ("a01", "b01")] and len(cs) == 8
