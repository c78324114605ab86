"""Measures of a rendered PNG that tell a picture from a blank or flat one."""

import numpy as np


def png_pixels(path):
    """The PNG's RGB pixels, shape (height, width, 3), the top row first."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOImage import vtkPNGReader

    r = vtkPNGReader()
    r.SetFileName(str(path))
    r.Update()
    img = r.GetOutput()
    w, h = img.GetDimensions()[:2]
    a = vtk_to_numpy(img.GetPointData().GetScalars()).astype(float)[:, :3]
    return a.reshape(h, w, 3)[::-1]  # VTK's rows run bottom up


def png_stats(path):
    """((width, height), mean per-channel standard deviation, number of distinct colours)."""
    a = png_pixels(path)
    h, w = a.shape[:2]
    a = a.reshape(-1, 3)
    return (w, h), a.std(axis=0).mean(), len(np.unique(a.round(-1), axis=0))
