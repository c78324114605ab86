"""Topology engine: persistence, simplification, join tree and basins of grid fields, as TTK.

Pure numpy + numba (no VTK). Fields follow Globscope's convention ``F[i, j(, k, l)]`` with i along
x; vertex ids are VTK point ids (``F.ravel(order="F")`` positions). Grids of dimension 1 to 4 are
triangulated like TTK's implicit triangulation (:mod:`globscope.topology.grid`); vertices are
ordered by (value, vertex id), non-finite values last.

Main entry point: :func:`analyze`. Building blocks: :func:`persistence_pairs`,
:func:`critical_points`, :func:`join_tree`, :func:`simplify`, :func:`vertex_order`.
"""

from .analysis import analyze
from .critical_points import critical_points
from .grid import link_adjacency, neighbor_offsets, vertex_ids, vertex_index
from .merge_tree import join_tree
from .order import prepare_field, vertex_order
from .persistence import persistence_pairs
from .results import (
    CRITICAL_TYPE_NAMES,
    CriticalPoints,
    JoinTree,
    PersistencePairs,
    Simplification,
    TopologyResult,
    to_grid,
)
from .simplification import simplify

__all__ = [
    "analyze",
    "persistence_pairs",
    "critical_points",
    "join_tree",
    "simplify",
    "vertex_order",
    "prepare_field",
    "neighbor_offsets",
    "link_adjacency",
    "vertex_ids",
    "vertex_index",
    "to_grid",
    "CRITICAL_TYPE_NAMES",
    "PersistencePairs",
    "CriticalPoints",
    "JoinTree",
    "Simplification",
    "TopologyResult",
]
