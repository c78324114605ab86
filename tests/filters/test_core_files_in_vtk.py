"""Every file the VTK-free core writes is read back by real VTK (ParaView's vtkmodules), with
the same values: models.vtp, topology.vtu, image data in VTK point order."""

import numpy as np
import pytest

vtk_io = pytest.importorskip("vtkmodules.vtkIOXML", reason="ParaView's vtkmodules not installed")
from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402

from globscope import vtkxml  # noqa: E402
from globscope.bundle import write_model_points  # noqa: E402
from globscope.grid import Grid  # noqa: E402
from globscope.topology import analyze  # noqa: E402
from globscope.topology.export import read_grid_field, write_topology  # noqa: E402


def _read(cls, path):
    r = cls()
    r.SetFileName(str(path))
    r.Update()
    assert r.GetErrorCode() == 0
    return r.GetOutput()


def test_image_data_point_order_is_x_fastest(tmp_path):
    F = np.random.default_rng(0).normal(size=(5, 4, 3))
    vtkxml.write_image_data(tmp_path / "f.vti", {"f": F, "i": np.arange(60).reshape(5, 4, 3)},
                            Grid((1, 2, 3), (0.5, 0.25, 2), F.shape))
    img = _read(vtk_io.vtkXMLImageDataReader, tmp_path / "f.vti")
    assert img.GetDimensions() == (5, 4, 3) and img.GetSpacing() == (0.5, 0.25, 2.0)
    got = vtk_to_numpy(img.GetPointData().GetArray("f"))
    for i, j, k in [(0, 0, 0), (4, 0, 0), (1, 3, 2), (3, 2, 1)]:
        assert got[img.ComputePointId([i, j, k])] == F[i, j, k]
        assert img.GetPoint(img.ComputePointId([i, j, k])) == (1 + 0.5 * i, 2 + 0.25 * j, 3 + 2.0 * k)


def test_models_vtp_has_points_polylines_and_arrays(digits_zoo, digits_weights, tmp_path):
    Z = np.random.default_rng(1).normal(size=(len(digits_zoo), 2))
    err = np.linspace(0, 1, len(digits_zoo))
    write_model_points(tmp_path / "models.vtp", Z, digits_zoo, err)
    pd = _read(vtk_io.vtkXMLPolyDataReader, tmp_path / "models.vtp")
    assert pd.GetNumberOfPoints() == len(digits_zoo) and pd.GetNumberOfLines() == len(digits_zoo.runs)
    assert pd.GetNumberOfVerts() == len(digits_zoo)
    np.testing.assert_array_equal(vtk_to_numpy(pd.GetPoints().GetData())[:, :2], Z)
    np.testing.assert_array_equal(vtk_to_numpy(pd.GetPointData().GetArray("reconstruction_error")), err)
    variants = pd.GetPointData().GetAbstractArray("variant")
    assert [variants.GetValue(i) for i in (0, len(digits_zoo) - 1)] == ["A", digits_zoo.runs[-1]]
    assert "eval_loss" in [pd.GetPointData().GetArrayName(i) for i in range(pd.GetPointData().GetNumberOfArrays())]


def test_topology_files_open_in_vtk(tmp_path):
    x = np.linspace(-1, 1, 21)
    F = np.minimum.reduce([np.add.outer((x - a) ** 2, (x - b) ** 2) + c for a, b, c in
                           [(-0.5, -0.5, 0), (0.5, 0.4, 0.1), (0.0, 0.7, 0.2)]])
    vtkxml.write_image_data(tmp_path / "f.vti", {"loss": F}, Grid((0, 0), (0.1, 0.1), F.shape))
    field = read_grid_field(tmp_path / "f.vti", "loss")
    res = analyze(field.values)
    write_topology(res, field, tmp_path / "t")
    ug = _read(vtk_io.vtkXMLUnstructuredGridReader, tmp_path / "t" / "topology.vtu")
    t = res.join_tree
    assert ug.GetNumberOfPoints() == t.n_nodes == 6 and ug.GetNumberOfCells() == t.n_nodes + t.n_arcs
    np.testing.assert_array_equal(vtk_to_numpy(ug.GetPointData().GetArray("VertexId")), t.node_vertex)
    np.testing.assert_array_equal(vtk_to_numpy(ug.GetCellData().GetArray("upNodeId"))[t.n_nodes:], t.arc_up)
    img = _read(vtk_io.vtkXMLImageDataReader, tmp_path / "t" / "topology.vti")
    seg = vtk_to_numpy(img.GetPointData().GetArray("SegmentationId"))
    np.testing.assert_array_equal(seg, t.segmentation)
    assert img.GetPointData().GetArray("loss_simplified") is not None


def test_core_reads_what_vtk_writes_extent_offsets_and_string_arrays(tmp_path):
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonCore import vtkPoints, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData

    img = vtkImageData()
    img.SetExtent(2, 5, 0, 3, 0, 0)  # a sub-grid: its first vertex sits at origin + 2 * spacing
    img.SetOrigin(1.0, 0.0, 0.0)
    img.SetSpacing(0.5, 1.0, 1.0)
    vals = np.arange(16.0)
    a = numpy_to_vtk(vals, deep=True)
    a.SetName("f")
    img.GetPointData().AddArray(a)
    pd = vtkPolyData()
    pts = vtkPoints()
    for i in range(3):
        pts.InsertNextPoint(i, 0, 0)
    pd.SetPoints(pts)
    names = vtkStringArray()
    names.SetName("variant")
    for v in ("A", "BB", "C"):
        names.InsertNextValue(v)
    pd.GetPointData().AddArray(names)
    for writer, obj, name in [(vtk_io.vtkXMLImageDataWriter(), img, "f.vti"),
                              (vtk_io.vtkXMLPolyDataWriter(), pd, "p.vtp")]:
        writer.SetInputData(obj)
        writer.SetDataModeToBinary()
        writer.SetFileName(str(tmp_path / name))
        assert writer.Write() == 1
    F, data = vtkxml.read_field(tmp_path / "f.vti", "f")
    assert data.grid.origin[0] == pytest.approx(2.0) and F.shape == (4, 4)
    assert F[1, 2] == vals[1 + 4 * 2]
    field = read_grid_field(tmp_path / "f.vti", "f")
    np.testing.assert_allclose(field.grid.coordinates([0]), [[2.0, 0.0]])
    assert list(vtkxml.read(tmp_path / "p.vtp").point_data["variant"]) == ["A", "BB", "C"]
