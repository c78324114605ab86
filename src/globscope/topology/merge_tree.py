"""Join tree (merge tree of the sublevel sets) and its segmentation, numbered like TTK's FTM."""

from __future__ import annotations

import numpy as np

from globscope.names import CriticalType as CT

from .results import JoinTree
from .sweep import Sweep, sublevel_sweep

__all__ = ["join_tree", "tree_from_sweep", "arc_order"]


def arc_order(down: np.ndarray, up: np.ndarray, n_nodes: int) -> np.ndarray:
    """Globscope's arc numbering: leaf arcs first (by leaf node), then saddle arcs, each by down node.

    Parameters
    ----------
    down, up : ndarray of int, shape (n_arcs,)
        Node ids of each arc's ends (``up`` -1: no upper end).

    Returns
    -------
    ndarray of int, shape (n_arcs,)
        The arcs in that order (``perm[new_id] = old_id``).
    """
    n_below = np.bincount(up[up >= 0], minlength=n_nodes)
    return np.lexsort((down, n_below[down] != 0))


def tree_from_sweep(sw: Sweep) -> JoinTree:
    """Assemble a :class:`JoinTree` from a :class:`Sweep`."""
    fi = sw.field
    nv = sw.node_vertex
    # node ids in increasing vertex order (root nodes were appended last by the kernel)
    node_perm = np.argsort(fi.rank[nv], kind="stable")
    node_new = np.empty_like(node_perm)
    node_new[node_perm] = np.arange(node_perm.shape[0])
    node_vertex = nv[node_perm]
    down = node_new[sw.arc_down]
    up = np.where(sw.arc_up >= 0, node_new[np.maximum(sw.arc_up, 0)], -1)
    has_up = sw.arc_up >= 0
    # drop the kernel's "no arc above" marker (a 1-D join saddle that is also the maximum)
    n_below = np.bincount(up[has_up], minlength=node_vertex.shape[0])
    n_above = np.bincount(down, minlength=node_vertex.shape[0])
    arc_perm = arc_order(down, up, node_vertex.shape[0])
    arc_new = np.empty_like(arc_perm)
    arc_new[arc_perm] = np.arange(arc_perm.shape[0])
    keep = has_up[arc_perm]
    arc_down = down[arc_perm]
    arc_up = up[arc_perm]
    seg = np.where(sw.segmentation >= 0, arc_new[np.maximum(sw.segmentation, 0)], -1)
    if not keep.all():
        # arcs without an upper end hold only their saddle: give it to the arc below instead
        dropped = np.nonzero(~keep)[0]
        remap = np.cumsum(keep) - 1
        for a in dropped:
            node = arc_down[a]
            below = np.nonzero(arc_up == node)[0]
            seg[seg == a] = below[0] if below.size else -1
        seg = np.where(seg >= 0, remap[np.maximum(seg, 0)], -1)
        arc_down = arc_down[keep]
        arc_up = arc_up[keep]
    # the root's own vertex lies on the arc below it (the kernel left it on that arc already)
    node_type = np.full(node_vertex.shape[0], CT.REGULAR, dtype=np.int8)
    node_type[(n_below == 0)] = CT.MINIMUM
    node_type[(n_below == 1) & (n_above == 0)] = CT.MAXIMUM
    node_type[(n_below == 2)] = CT.SADDLE1
    node_type[(n_below > 2)] = CT.DEGENERATE
    return JoinTree(
        node_vertex=node_vertex,
        node_scalar=fi.values[node_vertex],
        node_type=node_type,
        arc_down=arc_down,
        arc_up=arc_up,
        segmentation=seg,
    )


def join_tree(F, mask=None) -> JoinTree:
    """Join tree of a grid field: TTK FTM's skeleton nodes, skeleton arcs and segmentation.

    Parameters
    ----------
    F : array_like of float, shape (nx[, ny[, nz[, nw]]])
        ``F[i, j, k, l]``, i along x.
    mask : array_like of bool, same shape as F, optional
        Vertices to ignore; a mask that disconnects the grid gives a forest (one root each).

    Returns
    -------
    JoinTree
    """
    return tree_from_sweep(sublevel_sweep(F, mask))
