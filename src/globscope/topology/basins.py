"""Basins of points: the segmentation label of the grid vertex nearest to each point."""

from __future__ import annotations

import numpy as np

from globscope.grid import Grid, to_points


def basin_of_points(grid: Grid, segmentation, points) -> tuple[np.ndarray, np.ndarray]:
    """The ``SegmentationId`` (join-tree arc) of the grid vertex nearest to each point.

    Parameters
    ----------
    grid : Grid
        The segmented field's grid.
    segmentation : array of shape ``grid.shape``, or (n_points,) in point-id order
        ``SegmentationId`` of every vertex.
    points : array of shape (M, d)

    Returns
    -------
    basin : ndarray of int64, shape (M,)
        The arc id; -1 for points more than half a cell outside the grid.
    vertex : ndarray of int64, shape (M,)
        Point id of the nearest vertex; -1 outside.
    """
    seg = np.asarray(segmentation)
    seg = to_points(seg) if seg.ndim > 1 else seg
    vid, inside = grid.nearest_vertex(np.asarray(points, dtype=np.float64)[:, :grid.dim])
    basin = np.where(inside, seg[vid].astype(np.int64), -1)
    return basin, np.where(inside, vid, -1)


__all__ = ["basin_of_points"]
