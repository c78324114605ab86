"""The union-find sweep of the sublevel sets, shared by persistence pairs and the join tree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from globscope.grid import padded_shape, strides

from . import _kernels
from .grid import padded_offsets
from .order import FieldInput, prepare_field

__all__ = ["Sweep", "sublevel_sweep", "grid_arrays"]


def grid_arrays(shape):
    """``(dims, strides, offsets)`` arrays the kernels take."""
    return padded_shape(shape), strides(shape), padded_offsets(len(shape))


@dataclass(frozen=True)
class Sweep:
    """Raw output of the sweep (kernel numbering); see :func:`sublevel_sweep`."""

    field: FieldInput
    pair_birth: np.ndarray
    pair_death: np.ndarray
    pair_elder: np.ndarray
    node_vertex: np.ndarray
    arc_down: np.ndarray
    arc_up: np.ndarray
    segmentation: np.ndarray
    comp_min: np.ndarray
    comp_max: np.ndarray


def sublevel_sweep(F, mask=None) -> Sweep:
    """Sweep the vertices in increasing order with a union-find (compiled with numba).

    One pass gives the minimum–saddle pairs (elder rule), the join tree and its segmentation.

    Parameters
    ----------
    F : array_like, shape (nx[, ny[, nz[, nw]]]) or FieldInput
    mask : array_like of bool, same shape, optional

    Returns
    -------
    Sweep
    """
    fi = prepare_field(F, mask)
    dims, strides, offs = grid_arrays(fi.shape)
    out = _kernels.join_sweep(fi.rank, fi.verts, dims, strides, offs)
    return Sweep(fi, *out)
