"""numpy <-> VTK: the one module where Globscope arrays become VTK data objects and back.

Fields follow the core's convention ``F[i, j(, k)]`` with i along x; :mod:`globscope.grid` turns them
into VTK's point order (x fastest) and describes an image's geometry (:func:`image_grid`).
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util import numpy_support as ns
from vtkmodules.vtkCommonCore import vtkIdTypeArray, vtkPoints, vtkStringArray
from vtkmodules.vtkCommonDataModel import (
    VTK_LINE,
    VTK_VERTEX,
    vtkCellArray,
    vtkImageData,
    vtkPolyData,
    vtkTable,
    vtkUnstructuredGrid,
)

from globscope.grid import Grid, to_points


def to_vtk_array(name: str, values):
    """A named VTK array (numeric, or ``vtkStringArray`` for strings / objects)."""
    a = np.asarray(values)
    if a.dtype.kind in "OUS":
        arr = vtkStringArray()
        arr.SetName(name)
        arr.SetNumberOfValues(len(a))
        for i, v in enumerate(a):
            arr.SetValue(i, "" if v is None else str(v))
        return arr
    if a.dtype == bool:
        a = a.astype(np.int8)
    if a.dtype == np.int64:
        arr = ns.numpy_to_vtk(np.ascontiguousarray(a), deep=True, array_type=ns.get_vtk_array_type(np.int64))
    else:
        arr = ns.numpy_to_vtk(np.ascontiguousarray(a), deep=True)
    arr.SetName(name)
    return arr


def from_vtk_array(arr) -> np.ndarray:
    """numpy copy of a VTK array (a list of str for ``vtkStringArray``)."""
    if arr is None:
        return None
    if isinstance(arr, vtkStringArray):
        return np.array([arr.GetValue(i) for i in range(arr.GetNumberOfValues())], dtype=object)
    return ns.vtk_to_numpy(arr).copy()


def add_arrays(attributes, arrays: dict) -> None:
    """Add every ``name -> values`` of ``arrays`` to a vtkDataSetAttributes / vtkFieldData."""
    for name, values in arrays.items():
        attributes.AddArray(to_vtk_array(name, values))


def set_field_strings(obj, **values) -> None:
    """Field data of one string each (e.g. the manifold file a downstream filter needs)."""
    fd = obj.GetFieldData()
    for k, v in values.items():
        fd.RemoveArray(k)
        fd.AddArray(to_vtk_array(k, np.array([str(v)], dtype=object)))


def field_string(obj, name: str) -> str | None:
    arr = obj.GetFieldData().GetAbstractArray(name) if obj is not None else None
    if arr is None or arr.GetNumberOfValues() == 0:
        return None
    return str(arr.GetVariantValue(0).ToString())


def image_data(fields: dict, grid: Grid, field_data: dict | None = None) -> vtkImageData:
    """vtkImageData of fields ``F[i, j(, k)]`` of shape ``grid.shape`` (d <= 3)."""
    origin, spacing, shape = grid.padded(3)
    img = vtkImageData()
    img.SetDimensions(*shape)
    img.SetOrigin(*origin)
    img.SetSpacing(*spacing)
    pd = img.GetPointData()
    for k, F in fields.items():
        pd.AddArray(to_vtk_array(k, to_points(F)))
    if field_data:
        add_arrays(img.GetFieldData(), field_data)
    return img


def image_grid(img) -> Grid:
    """The grid of a vtkImageData's stored points (its extent may start anywhere, e.g. after
    Extract Subset: the offset moves the grid's origin; point ids count stored points)."""
    return Grid.from_extent(img.GetOrigin(), img.GetSpacing(), img.GetExtent())


def image_field(img, name: str) -> np.ndarray:
    """The point array ``name`` of a vtkImageData as ``F[i, j(, k)]`` of shape ``image_grid(img).shape``."""
    arr = img.GetPointData().GetArray(name)
    if arr is None:
        raise KeyError(f"the image has no point array {name!r}")
    return image_grid(img).to_field(from_vtk_array(arr))


def points3(P) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 1:
        P = P[:, None]
    out = np.zeros((P.shape[0], 3))
    out[:, :min(3, P.shape[1])] = P[:, :3]
    return out


def _points(points) -> vtkPoints:
    pts = vtkPoints()
    pts.SetData(ns.numpy_to_vtk(np.ascontiguousarray(points3(points)), deep=True))
    return pts


def _add_attributes(ds, point_data: dict | None, cell_data: dict | None, field_data: dict | None):
    add_arrays(ds.GetPointData(), point_data or {})
    add_arrays(ds.GetCellData(), cell_data or {})
    add_arrays(ds.GetFieldData(), field_data or {})
    return ds


def poly_data(points, point_data: dict | None = None, lines=(), verts: bool = True,
              field_data: dict | None = None, cell_data: dict | None = None) -> vtkPolyData:
    """vtkPolyData: points (N, <=3), optional one vertex cell per point, polylines (index lists)."""
    pd = vtkPolyData()
    pd.SetPoints(_points(points))
    if verts:
        ca = vtkCellArray()
        for i in range(pd.GetNumberOfPoints()):
            ca.InsertNextCell(1)
            ca.InsertCellPoint(i)
        pd.SetVerts(ca)
    if len(lines):
        la = vtkCellArray()
        for line in lines:
            la.InsertNextCell(len(line))
            for i in line:
                la.InsertCellPoint(int(i))
        pd.SetLines(la)
    return _add_attributes(pd, point_data, cell_data, field_data)


def unstructured_grid(points, cells, cell_type, point_data: dict | None = None,
                      cell_data: dict | None = None, field_data: dict | None = None) -> vtkUnstructuredGrid:
    """vtkUnstructuredGrid with cells of one type (``cells``: (n_cells, k) index array)."""
    ug = vtkUnstructuredGrid()
    ug.SetPoints(_points(points))
    cells = np.asarray(cells, dtype=np.int64).reshape(len(cells), -1) if len(cells) else np.zeros((0, 1), np.int64)
    ug.Allocate(len(cells))
    for c in cells:
        ug.InsertNextCell(cell_type, len(c), [int(i) for i in c])
    return _add_attributes(ug, point_data, cell_data, field_data)


def table(columns: dict, field_data: dict | None = None) -> vtkTable:
    t = vtkTable()
    for k, v in columns.items():
        t.AddColumn(to_vtk_array(k, v))
    add_arrays(t.GetFieldData(), field_data or {})
    return t


def point_arrays(ds) -> dict:
    """Every point array of a data set, by name, as numpy."""
    pd = ds.GetPointData()
    return {pd.GetArrayName(i): from_vtk_array(pd.GetAbstractArray(i)) for i in range(pd.GetNumberOfArrays())}


def point_coords(ds) -> np.ndarray:
    return ns.vtk_to_numpy(ds.GetPoints().GetData()).astype(np.float64).copy() if ds.GetPoints() else np.zeros((0, 3))


__all__ = ["to_vtk_array", "from_vtk_array", "add_arrays", "set_field_strings", "field_string", "image_data",
           "image_field", "image_grid", "poly_data", "unstructured_grid", "table", "point_arrays",
           "point_coords", "VTK_LINE", "VTK_VERTEX", "vtkIdTypeArray"]
