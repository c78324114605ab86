"""`globscope topology` files: what they hold equals TTK 1.2's reference outputs, and bad input
gets a clear error naming the file."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from ttk_reference import REFERENCE as REF

from globscope import stages, vtkxml
from globscope.errors import GlobscopeError
from globscope.settings import TopologySettings
from globscope.topology.export import read_grid_field


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["wells2d_64x48", "wells3d_24x20x16", "plateau2d_40x40"])
def test_cli_outputs_equal_ttk_reference(name, tmp_path):
    out = tmp_path / "topo"
    r = subprocess.run([sys.executable, "-m", "globscope", "topology", str(REF / "fields" / f"{name}.vti"),
                        "--array", "f", "--persistence", "0.05", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ttk = REF / "ttk-1.2" / name
    # merge tree nodes of the simplified field: same ids, vertices, exact scalars
    nodes, ref_nodes = rows(out / "merge_tree_nodes.csv"), rows(ttk / "mt_nodes_simplified.csv")
    assert [(n["node_id"], n["vertex_id"], float(n["scalar"])) for n in nodes] == \
        [(n["node_id"], n["vertex_id"], float(n["scalar"])) for n in ref_nodes]
    # persistence pairs of the input: TTK's minimum-saddle pairs and the essential pair
    pairs = rows(out / "persistence_pairs.csv")
    ref_pairs = [p for p in rows(ttk / "pd_input.csv") if p["pair_type"] == "0"]
    assert sorted((p["birth_vertex"], p["death_vertex"], float(p["persistence"])) for p in pairs) == \
        sorted((p["birth_vertex"], p["death_vertex"], float(p["persistence"])) for p in ref_pairs)
    # the arcs join the same node pairs
    arcs = {(a["down_node"], a["up_node"]) for a in rows(out / "merge_tree_arcs.csv")}
    assert arcs == {(a["down_node_id"], a["up_node_id"]) for a in rows(ttk / "mt_arcs_simplified.csv")}
    # topology.vti: the simplified field is TTK's, the basins have TTK's leaf arcs
    data = vtkxml.read(out / "topology.vti")
    assert np.array_equal(data.point_data["f_simplified"], np.load(ttk / "simplified_f.npy").ravel())
    assert np.array_equal(data.point_data["f"], np.load(REF / "fields" / f"{name}.npy").ravel())
    seg, ref_seg = data.point_data["SegmentationId"], np.load(ttk / "mt_segmentation_simplified.npy").ravel()
    n_leaves = sum(n["critical_type"] == "0" for n in nodes)
    leaf = ref_seg < n_leaves
    assert np.array_equal(seg[leaf], ref_seg[leaf])
    # topology.vtu: node points sit at their vertices' coordinates
    vtu = vtkxml.read(out / "topology.vtu")
    field = read_grid_field(REF / "fields" / f"{name}.vti", "f")
    vid = vtu.point_data["VertexId"]
    np.testing.assert_allclose(vtu.points[:, :field.values.ndim], field.grid.coordinates(vid))
    s = json.loads((out / "topology.json").read_text())
    assert s["n_basins"] == n_leaves == json.loads((ttk / "summary.json").read_text())["tree_simplified"]["n_leaves"]


def test_four_d_npz_round_trip(tmp_path):
    x = np.linspace(-1, 1, 7)
    X = np.stack(np.meshgrid(x, x, x, x, indexing="ij"))
    F = np.minimum(((X - 0.5) ** 2).sum(0), ((X + 0.5) ** 2).sum(0) + 0.1)
    np.savez(tmp_path / "f4.npz", origin=np.zeros(4), spacing=np.full(4, 1 / 3), loss=F)
    s = stages.topology(tmp_path / "f4.npz", tmp_path / "o", TopologySettings("loss", persistence=0.0))
    assert s["n_basins"] == 2 and "topology.npz" in s["files"]
    with np.load(tmp_path / "o" / "topology.npz") as z:
        assert z["SegmentationId"].shape == F.shape
        assert np.array_equal(z["loss"], F)


def test_bad_inputs_name_the_file(tmp_path):
    grid = np.arange(12.0).reshape(4, 3)
    vtkxml.write_image_data(tmp_path / "g.vti", {"a": grid})
    vtkxml.write_poly_data(tmp_path / "p.vtp", np.zeros((2, 3)), {"a": np.zeros(2)})
    with pytest.raises(GlobscopeError, match=r"g.vti: no point array 'b' \(has a\)"):
        read_grid_field(tmp_path / "g.vti", "b")
    with pytest.raises(GlobscopeError, match=r"p.vtp: holds PolyData, not a regular grid"):
        read_grid_field(tmp_path / "p.vtp", "a")
    with pytest.raises(GlobscopeError, match=r"missing.vti: file not found"):
        read_grid_field(tmp_path / "missing.vti")
    from globscope.fileio import write_bytes
    from globscope.vtkxml import _data_array, _file
    body = ('<ImageData WholeExtent="0 1 0 0 0 0" Origin="0 0 0" Spacing="1 1 1"><Piece Extent="0 1 0 0 0 0">'
            f'<PointData>{_data_array("v", np.zeros((2, 3)), 3)}</PointData></Piece></ImageData>')
    write_bytes(tmp_path / "vec.vti", _file("ImageData", body))
    with pytest.raises(GlobscopeError, match=r"vec.vti: array 'v' has 3 components"):
        read_grid_field(tmp_path / "vec.vti", "v")
    np.savez(tmp_path / "five.npz", f=np.zeros((2, 2, 2, 2, 2)))
    np.savez(tmp_path / "text.npz", f=np.array(["a", "b"]))
    np.savez(tmp_path / "orig.npz", f=np.zeros((3, 3)), origin=np.zeros(1))
    (tmp_path / "junk.npz").write_text("not an npz")
    for name, message in [("five.npz", "is not a 1- to 4-D grid"), ("text.npz", "is not numeric"),
                          ("orig.npz", "origin and spacing need 2 values"), ("junk.npz", "not a readable .npz")]:
        with pytest.raises(GlobscopeError, match=f"{name}: .*{message}"):
            read_grid_field(tmp_path / name)
    with pytest.raises(GlobscopeError, match="persistence must be a fraction"):
        stages.topology(tmp_path / "g.vti", tmp_path / "o", TopologySettings("a", persistence=2.0))


def test_non_finite_values_are_counted_and_kept(tmp_path):
    F = np.add.outer(np.linspace(-1, 1, 9) ** 2, np.linspace(-1, 1, 8) ** 2)
    F[2, 3] = np.nan
    F[7, 7] = np.inf
    vtkxml.write_image_data(tmp_path / "n.vti", {"loss": F})
    s = stages.topology(tmp_path / "n.vti", tmp_path / "o", TopologySettings("loss", persistence=0.0))
    assert s["n_nonfinite"] == 2 and s["n_basins"] == 1
    out = vtkxml.read(tmp_path / "o" / "topology.vti").point_data["loss_simplified"]
    assert np.isnan(out[2 + 9 * 3]) and np.isinf(out[7 + 9 * 7])


def test_fields_and_thresholds_without_finite_values_are_refused(tmp_path):
    """An all-NaN field has no minima (it used to "succeed" with one basin); a NaN or infinite
    threshold is refused before any work, in one line."""
    F = np.full((6, 5), np.nan)
    F[0, 0] = np.inf
    vtkxml.write_image_data(tmp_path / "nan.vti", {"loss": F})
    with pytest.raises(GlobscopeError, match=r"nan\.vti \[loss\]: no finite value in the field \(30 vertices"):
        stages.topology(tmp_path / "nan.vti", tmp_path / "o", TopologySettings("loss"))
    assert not (tmp_path / "o").exists()
    for value, absolute in ((float("nan"), False), (float("nan"), True), (float("inf"), True)):
        with pytest.raises(GlobscopeError, match=f"persistence must be .* got {value}"):
            TopologySettings("loss", persistence=value, absolute=absolute)
    r = subprocess.run([sys.executable, "-m", "globscope", "topology", str(tmp_path / "nan.vti"), "--array", "loss",
                        "--persistence", "inf", "--absolute", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "got inf" in r.stderr


def test_outputs_can_be_skipped_and_stale_files_go(tmp_path):
    """``--outputs`` writes only what is asked (the files equal a full run's byte for byte); a
    rerun that skips an output removes that output's files from the earlier run, and a name that
    is not an output is refused before any work."""
    src = REF / "fields" / "wells2d_64x48.vti"
    full, part = tmp_path / "full", tmp_path / "part"
    ts = TopologySettings("f", persistence=0.05)
    s = stages.topology(src, full, ts)
    assert sorted(s["files"]) == sorted(p.name for p in full.iterdir() if p.name != "topology.json")
    stages.topology(src, part, ts)
    s = stages.topology(src, part, ts, outputs=("tree",))
    assert s["files"] == ["topology.vtu"]
    assert sorted(p.name for p in part.iterdir()) == ["topology.json", "topology.vtu"]
    assert (part / "topology.vtu").read_bytes() == (full / "topology.vtu").read_bytes()
    assert json.loads((part / "topology.json").read_text())["files"] == ["topology.vtu"]
    r = subprocess.run([sys.executable, "-m", "globscope", "topology", str(src), "--array", "f",
                        "--outputs", "tables", "field", "--out", str(part)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (part / "topology.vtu").exists()
    for name in ("merge_tree_nodes.csv", "persistence_pairs.csv", "topology.vti"):
        assert (part / name).read_bytes() == (full / name).read_bytes()
    with pytest.raises(GlobscopeError, match="unknown topology output 'csv': choose from tables, tree, field"):
        stages.topology(src, tmp_path / "none", ts, outputs=("csv",))
    assert not (tmp_path / "none").exists()
