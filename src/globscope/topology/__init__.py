"""Topology engine: persistence, simplification, join tree and basins of grid fields, as TTK.

Pure numpy + numba (no VTK). Fields follow Globscope's convention ``F[i, j(, k, l)]`` with i along
x; vertex ids are VTK point ids (:mod:`globscope.grid`). Grids of dimension 1 to 4 are
triangulated like TTK's implicit triangulation (:mod:`globscope.topology.grid`); vertices are
ordered by (value, vertex id), non-finite values last.

Main entry point: :func:`analyze`. Building blocks: :func:`persistence_pairs`,
:func:`critical_points`, :func:`join_tree`, :func:`simplify`, :func:`vertex_order`.
"""

from .analysis import analyze
from .critical_points import critical_points
from .grid import link_adjacency, neighbor_offsets
from .merge_tree import join_tree
from .order import prepare_field, vertex_order
from .persistence import persistence_pairs
from .results import (
    CriticalPoints,
    JoinTree,
    PersistencePairs,
    Simplification,
    TopologyResult,
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
    "PersistencePairs",
    "CriticalPoints",
    "JoinTree",
    "Simplification",
    "TopologyResult",
]
