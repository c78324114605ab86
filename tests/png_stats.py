"""Measures of a rendered PNG that tell a picture from a blank or flat one."""

import numpy as np


def png_stats(path):
    """((width, height), mean per-channel standard deviation, number of distinct colours)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    r = vtkPNGReader()
    r.SetFileName(str(path))
    r.Update()
    img = r.GetOutput()
    a = vtk_to_numpy(img.GetPointData().GetScalars()).astype(float)[:, :3]
    return img.GetDimensions()[:2], a.std(axis=0).mean(), len(np.unique(a.round(-1), axis=0))
