"""Globscope's VTK algorithms in the venv's Python (plain vtkmodules, no ParaView session)."""

from pathlib import Path

import numpy as np
import pytest

vtk = pytest.importorskip("vtkmodules")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GLOBSCOPE_CACHE", str(tmp_path_factory.getbasetemp() / "filters-cache"))


@pytest.fixture(scope="module")
def A():
    from python_filters import algorithms

    return algorithms


def test_vtk_point_order_is_x_fastest():
    from python_filters import vtkconv as vc

    F = np.arange(12.0).reshape(4, 3)  # F[i, j], nx=4, ny=3
    img = vc.image_data({"f": F}, (0, 0), (1, 1))
    assert img.GetDimensions() == (4, 3, 1)
    a = vc.from_vtk_array(img.GetPointData().GetArray("f"))
    assert a[2 + 4 * 1] == F[2, 1]
    np.testing.assert_array_equal(vc.image_field(img, "f"), F)


def test_pipeline_reader_manifold_landscape_cache(A, digits_zoo):
    from python_filters import vtkconv as vc

    r = A.CheckpointSetReader()
    r.SetFileName(str(digits_zoo.root))
    m = A.ManifoldFilter()
    m.SetInputConnection(r.GetOutputPort())
    m.SetMethod("pca")
    m.Update()
    pts = m.GetOutputDataObject(0)
    assert r.GetVariants() == ["A", "B", "C"] and pts.GetNumberOfPoints() == 12 and pts.GetNumberOfLines() == 3
    assert vc.field_string(pts, "manifold_file").endswith(".pt")
    L = A.LossLandscape()
    L.SetInputConnection(m.GetOutputPort())
    L.SetResolution(6)
    progress = []
    L.AddObserver("ProgressEvent", lambda o, e: progress.append(o.GetProgress()))
    L.Update()
    img = L.GetOutputDataObject(0)
    assert img.GetDimensions() == (6, 6, 1)
    assert np.isfinite(vc.image_field(img, "loss")).all()
    assert progress and max(progress) == 1.0
    L.Modified()  # what an unrelated property change does
    L.Update()
    assert L.n_computed == 1
    L.SetMargin(0.3)
    L.Update()
    assert L.n_computed == 2


def test_abort_stops_the_landscape(A, digits_zoo):
    r = A.CheckpointSetReader()
    r.SetFileName(str(digits_zoo.root))
    m = A.ManifoldFilter()
    m.SetInputConnection(r.GetOutputPort())
    m.SetMethod("pca")
    L = A.LossLandscape()
    L.SetInputConnection(m.GetOutputPort())
    L.SetResolution(40)
    L.AddObserver("ProgressEvent", lambda o, e: o.SetAbortExecute(1) if o is L else None)
    L.Update()
    assert L.GetOutputDataObject(0).GetNumberOfPoints() == 0 and L.n_computed == 0


def _reference(name):
    from python_filters import vtkconv as vc

    f = np.load(SHARED / "fields" / f"{name}.npy")  # (ny, nx): ravel() is VTK order
    F = f.T
    return vc.image_data({"f": F}, (0, 0), (1.0 / (F.shape[0] - 1), 1.0 / (F.shape[1] - 1))), F


@pytest.mark.skipif(not (SHARED / "fields" / "wells2d_64x48.npy").is_file(), reason="no TTK reference data")
def test_topology_filters_give_ttks_answer(A):
    import csv

    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    from python_filters import vtkconv as vc

    img, F = _reference("wells2d_64x48")
    src = vtkTrivialProducer()
    src.SetOutput(img)
    ref = SHARED / "ttk-1.2" / "wells2d_64x48"
    pd = A.PersistenceDiagram()
    pd.SetInputConnection(src.GetOutputPort())
    pd.Update()
    d = pd.GetOutputDataObject(0)
    pairs = list(csv.DictReader(open(ref / "pd_input.csv")))
    min_saddle = [p for p in pairs if p["pair_type"] == "0"]
    assert d.GetNumberOfCells() - 1 == len(min_saddle)  # minus the diagonal
    pers = np.sort(vc.from_vtk_array(d.GetCellData().GetArray("Persistence"))[:-1])
    np.testing.assert_allclose(pers, np.sort([float(p["persistence"]) for p in min_saddle]), rtol=1e-9)
    mt = A.MergeTree()
    mt.SetInputConnection(src.GetOutputPort())
    mt.Update()
    nodes = mt.GetOutputDataObject(0)
    ref_nodes = list(csv.DictReader(open(ref / "mt_nodes_input.csv")))
    np.testing.assert_array_equal(vc.from_vtk_array(nodes.GetPointData().GetArray("VertexId")),
                                  [int(n["vertex_id"]) for n in ref_nodes])
    seg = vc.from_vtk_array(mt.GetOutputDataObject(2).GetPointData().GetArray("SegmentationId"))
    assert seg.shape == (F.size,) and seg.max() == mt.GetOutputDataObject(1).GetNumberOfCells() - 1


def _reader(A, path):
    r = A.CheckpointSetReader()
    r.SetFileName(str(path))
    return r


def test_manifold_file_refit_in_place_is_reloaded(A, digits_zoo, digits_weights, tmp_path):
    """The cache key of a given ManifoldFile holds its mtime and size, not the fit-only settings."""
    import os

    from globscope.manifolds import make_manifold
    from python_filters import vtkconv as vc

    path = tmp_path / "man.pt"

    def fit(dim):
        man = make_manifold("pca", dim, seed=0).fit(digits_weights)
        man.meta_ = {"task": "digits-mlp"}
        man.save(path)

    fit(2)
    r = _reader(A, digits_zoo.root)  # keep the Python algorithm alive while the pipeline runs
    m = A.ManifoldFilter()
    m.SetInputConnection(r.GetOutputPort())
    m.SetManifoldFile(str(path))
    m.Update()
    pts = m.GetOutputDataObject(0)
    assert vc.from_vtk_array(pts.GetFieldData().GetArray("latent_dim"))[0] == 2
    z2 = vc.point_coords(pts).copy()
    assert np.all(z2[:, 2] == 0)
    # fit-only settings do not matter while a file is given
    for setter, v in ((m.SetMethod, "umap"), (m.SetLatentDimension, 4), (m.SetSeed, 7), (m.SetEpochs, 3)):
        setter(v)
        m.Update()
    assert m.n_computed == 1
    # refit the same file in place: a different manifold (and a later mtime, whatever the clock)
    st = path.stat()
    fit(3)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    m.Modified()
    m.Update()
    assert m.n_computed == 2
    pts = m.GetOutputDataObject(0)
    assert vc.from_vtk_array(pts.GetFieldData().GetArray("latent_dim"))[0] == 3
    assert np.any(vc.point_coords(pts)[:, 2] != 0)


def test_folder_without_manifest_is_indexed_in_memory(A, digits_zoo, tmp_path):
    """A folder tree is indexed like ``index_folder`` does, but nothing is written into it, and
    checkpoints added later show up."""
    import shutil

    from globscope.checkpoints import index_folder
    from python_filters import vtkconv as vc

    data = tmp_path / "data"
    for c in digits_zoo.checkpoints:
        (data / c.file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(digits_zoo.root / c.file, data / c.file)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    cs = A.open_checkpoint_set(data)
    assert not (data / "manifest.json").exists()
    ref = index_folder(shutil.copytree(data, tmp_path / "ref"))  # what the core would index (and save)
    assert [c.to_dict() for c in cs.checkpoints] == [c.to_dict() for c in ref.checkpoints]
    r = _reader(A, data)
    r.Update()
    assert r.GetOutputDataObject(0).GetNumberOfRows() == 12 and r.GetNumberOfCheckpoints() == 12
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # the folder is untouched
    shutil.copy2(data / "A" / "epoch_4.pt", data / "A" / "epoch_5.pt")  # a run goes on training
    r.Modified()  # what ParaView's Reload Files does
    r.Update()
    assert r.GetNumberOfCheckpoints() == 13 and r.GetOutputDataObject(0).GetNumberOfRows() == 13
    assert "epoch_5" in " ".join(vc.from_vtk_array(r.GetOutputDataObject(0).GetColumnByName("file")))
    assert not (data / "manifest.json").exists()


@pytest.fixture
def output_window():
    """VTK's output window as a string (what ParaView shows in its Output Messages)."""
    from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow

    old = vtkOutputWindow.GetInstance()
    w = vtkStringOutputWindow()
    vtkOutputWindow.SetInstance(w)
    yield w
    vtkOutputWindow.SetInstance(old)


def test_user_mistakes_are_one_line_bugs_keep_their_traceback(A, output_window):
    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    from globscope.errors import GlobscopeError
    from python_filters import vtkconv as vc

    r = A.CheckpointSetReader()  # no FileName
    with pytest.raises(GlobscopeError, match="no checkpoint set given"):
        r.execute(None, None)
    r.Update()
    text = output_window.GetOutput()
    assert "CheckpointSetReader: no checkpoint set given" in text and "Traceback" not in text

    src = vtkTrivialProducer()
    src.SetOutput(vc.image_data({"f": np.arange(6.0).reshape(3, 2)}, (0, 0), (1, 1)))
    pd = A.PersistenceDiagram()
    pd.SetInputConnection(src.GetOutputPort())
    pd.SetInputArrayToProcess(0, 0, 0, 0, "nope")
    pd.Update()
    text = output_window.GetOutput()
    assert "has no point array 'nope'" in text and "Traceback" not in text

    class Buggy(A.CheckpointSetReader):
        def execute(self, inInfo, outInfo):
            return {}["a bug"]

    b = Buggy()
    b.SetFileName("anything")
    b.Update()
    text = output_window.GetOutput()
    assert "Buggy failed:" in text and "Traceback" in text and "KeyError: 'a bug'" in text
