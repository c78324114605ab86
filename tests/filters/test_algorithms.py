"""Globscope's VTK algorithms in the venv's Python (plain vtkmodules, no ParaView session)."""


import numpy as np
import pytest
from ttk_reference import REFERENCE as SHARED

from globscope import stages
from globscope.grid import Grid

vtk = pytest.importorskip("vtkmodules")


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
    img = vc.image_data({"f": F}, Grid((0, 0), (1, 1), F.shape))
    assert img.GetDimensions() == (4, 3, 1)
    a = vc.from_vtk_array(img.GetPointData().GetArray("f"))
    assert a[2 + 4 * 1] == F[2, 1]
    np.testing.assert_array_equal(vc.image_field(img, "f"), F)


def _pca_models(A, zoo):
    """Reader → Manifold (PCA) on ``zoo``; both returned (the pipeline keeps Python algorithms alive
    only while they are referenced)."""
    r = A.CheckpointSetReader()
    r.SetFileName(str(zoo.root))
    m = A.ManifoldFilter()
    m.SetInputConnection(r.GetOutputPort())
    m.SetMethod("pca")
    return r, m


def test_pipeline_reader_manifold_landscape_cache(A, digits_zoo):
    from python_filters import vtkconv as vc

    r, m = _pca_models(A, digits_zoo)
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
    r, m = _pca_models(A, digits_zoo)
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
    return vc.image_data({"f": F}, Grid((0, 0), (1.0 / (F.shape[0] - 1), 1.0 / (F.shape[1] - 1)), F.shape)), F


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
    cs = stages.open_set(data)
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
    src.SetOutput(vc.image_data({"f": np.arange(6.0).reshape(3, 2)}, Grid((0, 0), (1, 1), (3, 2))))
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


def _voi(img, extent):
    """The image cut to ``extent`` (i0, i1, j0, j1, k0, k1): VTK keeps the index space, so the
    extent does not start at 0 (what Extract Subset gives in ParaView)."""
    from vtkmodules.vtkImagingCore import vtkExtractVOI

    voi = vtkExtractVOI()
    voi.SetInputData(img)
    voi.SetVOI(*extent)
    voi.Update()
    out = voi.GetOutput()
    assert list(out.GetExtent()) == list(extent)
    return out


def _points(P):
    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    from python_filters import vtkconv as vc

    src = vtkTrivialProducer()
    src.SetOutput(vc.poly_data(P))
    return src


def test_basins_on_an_image_whose_extent_does_not_start_at_0(A):
    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    from python_filters import vtkconv as vc

    grid = Grid((1.0, -2.0), (0.5, 0.25), (12, 10))
    labels = grid.to_field(np.arange(grid.n_points))  # SegmentationId: the full image's point id
    img = vc.image_data({"SegmentationId": labels.astype(np.int32)}, grid)
    sub = _voi(img, (3, 9, 2, 8, 0, 0))
    assert vc.image_grid(sub).origin == (2.5, -1.5) and vc.image_grid(sub).shape == (7, 7)
    inside = np.array([[2.6, -1.4], [4.4, -0.1], [3.26, -0.76]])
    P = np.vstack([inside, [[1.2, -1.9]]])  # the last point: inside the full image, outside the subset
    seg = vtkTrivialProducer()
    seg.SetOutput(sub)
    pts = _points(P)
    b = A.Basins()
    b.SetInputConnection(0, pts.GetOutputPort())
    b.SetInputConnection(1, seg.GetOutputPort())
    b.Update()
    got = vc.from_vtk_array(b.GetOutputDataObject(0).GetPointData().GetArray("SegmentationId"))
    # independent truth: the nearest vertex of the full grid, by hand
    i = np.rint((inside[:, 0] - 1.0) / 0.5).astype(int)
    j = np.rint((inside[:, 1] + 2.0) / 0.25).astype(int)
    assert got.tolist() == (i + 12 * j).tolist() + [-1]


def test_project_models_on_an_image_whose_extent_does_not_start_at_0(A, digits_zoo):
    """Project Models reads a landscape cut to a subset at the models' latent points: an affine
    field is interpolated exactly where the subset covers them, NaN elsewhere."""
    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    from python_filters import vtkconv as vc

    r, m = _pca_models(A, digits_zoo)
    m.Update()
    Z = vc.point_coords(m.GetOutputDataObject(0))[:, :2]
    lo, hi = Z.min(0), Z.max(0)
    grid = Grid(tuple(lo - (hi - lo)), tuple((hi - lo) / 10), (31, 31))  # the box three times over
    P = grid.points()
    img = vc.image_data({"loss": grid.to_field(2 * P[:, 0] - 3 * P[:, 1] + 1)}, grid)
    sub = _voi(img, (10, 15, 10, 20, 0, 0))  # the lower half of the models' x range
    vc.set_field_strings(sub, manifold_file=vc.field_string(m.GetOutputDataObject(0), "manifold_file"))
    land = vtkTrivialProducer()
    land.SetOutput(sub)
    p = A.ProjectModels()
    p.SetInputConnection(0, m.GetOutputPort())
    p.SetInputConnection(1, land.GetOutputPort())
    p.SetCheckpointSet(str(digits_zoo.root))
    p.Update()
    got = vc.from_vtk_array(p.GetOutputDataObject(0).GetPointData().GetArray("field_loss"))
    sub_grid = vc.image_grid(sub)
    covered = np.all([(Z[:, a] >= b0) & (Z[:, a] <= b1) for a, (b0, b1) in enumerate(sub_grid.bounds)], axis=0)
    assert covered.any() and (~covered).any()
    np.testing.assert_allclose(got[covered], 2 * Z[covered, 0] - 3 * Z[covered, 1] + 1, rtol=1e-9, atol=1e-9)
    assert np.isnan(got[~covered]).all()


def test_validation_reader_keeps_one_manifolds_curves(A, tmp_path):
    """curves.vtp holds each curve once per manifold; the reader keeps the chosen manifold's."""
    from globscope.vtkxml import write_poly_data
    from python_filters import vtkconv as vc

    P = np.arange(24.0).reshape(8, 3)
    write_poly_data(tmp_path / "curves.vtp", P, {"real_loss": np.arange(8.0)}, verts=False,
                    lines=[np.arange(0, 4), np.arange(4, 8)],
                    cell_data={"manifold": np.array(["autoencoder", "pca"], dtype=object)})
    r = A.ValidationReader()
    r.SetFileName(str(tmp_path / "curves.vtp"))
    r.SetManifold("pca")
    r.Update()
    out = r.GetOutputDataObject(0)
    assert out.GetNumberOfLines() == 1 and out.GetNumberOfPoints() == 8
    ids = vc.from_vtk_array(out.GetLines().GetData())
    assert ids.tolist() == [4, 4, 5, 6, 7]  # the second polyline, by point id
    r.SetManifold("")
    r.Update()
    assert r.GetOutputDataObject(0).GetNumberOfLines() == 2
    r.SetManifold("umap")
    r.Update()  # a user mistake: one line in the output window, no output
    assert r.GetOutputDataObject(0).GetNumberOfLines() == 0
