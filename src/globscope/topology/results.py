"""Result containers of the topology engine (plain dataclasses of numpy arrays).

Vertex ids are VTK point ids; every per-vertex array is flat, in point-id order, of length
``N = F.size``; :func:`globscope.grid.to_field` reshapes one back to the field's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from globscope import names as N
from globscope.names import CriticalType, RegionType

__all__ = [
    "PersistencePairs",
    "CriticalPoints",
    "JoinTree",
    "Simplification",
    "TopologyResult",
]

@dataclass
class PersistencePairs:
    """Minimum–saddle persistence pairs (dimension 0) of the sublevel-set filtration.

    Row 0 (and following rows when a mask splits the domain) is the essential pair of a
    connected component, ``(global minimum, global maximum)``, with ``is_finite == False``, as
    TTK reports it. The finite pairs follow, sorted by birth (vertex order of their minimum).

    Attributes
    ----------
    birth_vertex, death_vertex : ndarray of int64, shape (n_pairs,)
    birth, death : ndarray of float64, shape (n_pairs,)
        Field values at the two vertices.
    persistence : ndarray of float64, shape (n_pairs,)
        ``death - birth``; ``inf`` when either value is non-finite.
    is_finite : ndarray of bool, shape (n_pairs,)
    pair_type : ndarray of int64, shape (n_pairs,)
        Always 0 (minimum–saddle), TTK's ``PairType``.
    elder_vertex : ndarray of int64, shape (n_pairs,)
        The older minimum whose component absorbs the dying one at the saddle (elder rule);
        ``-1`` for essential pairs.
    """

    birth_vertex: np.ndarray
    death_vertex: np.ndarray
    birth: np.ndarray
    death: np.ndarray
    persistence: np.ndarray
    is_finite: np.ndarray
    pair_type: np.ndarray
    elder_vertex: np.ndarray

    def __len__(self) -> int:
        return int(self.birth_vertex.shape[0])

    @property
    def finite(self) -> PersistencePairs:
        """Only the finite pairs."""
        return self.select(self.is_finite)

    def select(self, keep) -> PersistencePairs:
        """The pairs where the boolean (or index) array ``keep`` selects them."""
        return PersistencePairs(**{k: getattr(self, k)[keep] for k in self.__dataclass_fields__})

    def as_dict(self) -> dict:
        """Column name -> array, in the CSV column order the CLI writes."""
        return {
            "birth_vertex": self.birth_vertex,
            "death_vertex": self.death_vertex,
            "birth": self.birth,
            "death": self.death,
            "persistence": self.persistence,
            "pair_type": self.pair_type,
            "is_finite": self.is_finite,
        }


@dataclass
class CriticalPoints:
    """Critical points classified by the components of their lower and upper links (TTK rule).

    Attributes
    ----------
    critical_type : ndarray of int8, shape (N,)
        TTK ``CriticalType`` of every vertex (5 = regular, -1 = masked).
    lower_components, upper_components : ndarray of int64, shape (N,)
        Connected components of the lower / upper link (-1 = masked).
    is_on_boundary : ndarray of bool, shape (N,)
        Vertex on the boundary of the grid.
    vertices : ndarray of int64, shape (n_critical,)
        Non-regular vertices, increasing vertex id (TTK's output order).
    types : ndarray of int8, shape (n_critical,)
        ``critical_type[vertices]``.
    values : ndarray of float64, shape (n_critical,)
    """

    critical_type: np.ndarray
    lower_components: np.ndarray
    upper_components: np.ndarray
    is_on_boundary: np.ndarray
    vertices: np.ndarray
    types: np.ndarray
    values: np.ndarray

    def counts(self) -> dict:
        """Number of vertices of each critical type, by name (regular included)."""
        ct = self.critical_type[self.critical_type >= 0]
        return {t.name.lower(): int(np.count_nonzero(ct == t)) for t in CriticalType}


@dataclass
class JoinTree:
    """Join tree (merge tree of the sublevel sets): TTK FTM's skeleton nodes, arcs, segmentation.

    Nodes are the minima (leaves), the join saddles and one root per connected component at its
    maximum, numbered in increasing vertex order (node 0 is the global minimum). Regular vertices
    are not nodes.

    Arc numbering: arcs ``0 .. n_leaves-1`` start at the leaves, arc ``i`` at node ``i`` (as TTK);
    the remaining arcs start at saddles and are numbered by increasing down node (TTK numbers
    those in the order its parallel tasks close them: same arcs, a permutation of those ids).

    Attributes
    ----------
    node_vertex : ndarray of int64, shape (n_nodes,)
    node_scalar : ndarray of float64, shape (n_nodes,)
    node_type : ndarray of int8, shape (n_nodes,)
        TTK ``CriticalType`` from the node's arcs: 0 leaf, 3 root, 1 saddle joining two arcs,
        4 saddle joining more (multi-saddle).
    arc_down, arc_up : ndarray of int64, shape (n_arcs,)
        Node ids; the down node is the lower end.
    segmentation : ndarray of int64, shape (N,)
        ``SegmentationId``: the arc of every vertex (-1 = masked). A minimum belongs to the arc it
        starts, a saddle to the arc above it, the root to the arc below it.
    """

    node_vertex: np.ndarray
    node_scalar: np.ndarray
    node_type: np.ndarray
    arc_down: np.ndarray
    arc_up: np.ndarray
    segmentation: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.node_vertex.shape[0])

    @property
    def n_arcs(self) -> int:
        return int(self.arc_down.shape[0])

    @property
    def n_leaves(self) -> int:
        return int(np.count_nonzero(self.node_type == 0))

    @property
    def node_n_arcs_below(self) -> np.ndarray:
        """Arcs below each node, shape (n_nodes,)."""
        return np.bincount(self.arc_up[self.arc_up >= 0], minlength=self.n_nodes)

    @property
    def node_n_arcs_above(self) -> np.ndarray:
        """Arcs above each node, shape (n_nodes,)."""
        return np.bincount(self.arc_down, minlength=self.n_nodes)

    @property
    def region_type(self) -> np.ndarray:
        """TTK FTM's ``RegionType`` of each arc, shape (n_arcs,), from the types of its two nodes:
        ``MIN_ARC`` when either is a minimum, else ``MAX_ARC`` when either is the root, else
        ``SADDLE1_ARC`` between two simple saddles, else ``SADDLE1_SADDLE2_ARC`` (an end at a
        multi-saddle, ``CriticalType`` 4), as ``ttkFTMStructures.h`` assigns it."""
        lo = self.node_type[self.arc_down]
        hi = self.node_type[np.maximum(self.arc_up, 0)]
        return np.select(
            [(lo == CriticalType.MINIMUM) | (hi == CriticalType.MINIMUM),
             (lo == CriticalType.MAXIMUM) | (hi == CriticalType.MAXIMUM),
             (lo == CriticalType.SADDLE1) & (hi == CriticalType.SADDLE1),
             (lo == CriticalType.SADDLE2) & (hi == CriticalType.SADDLE2)],
            [RegionType.MIN_ARC, RegionType.MAX_ARC, RegionType.SADDLE1_ARC, RegionType.SADDLE2_ARC],
            RegionType.SADDLE1_SADDLE2_ARC).astype(np.int8)

    def region_span(self, positions: np.ndarray) -> np.ndarray:
        """TTK's ``RegionSpan`` of each arc: the distance between its two nodes, shape (n_arcs,).

        ``positions``: the nodes' coordinates, shape (n_nodes, d)."""
        return np.linalg.norm(positions[np.maximum(self.arc_up, 0)] - positions[self.arc_down], axis=1)

    @property
    def node_arc(self) -> np.ndarray:
        """The arc TTK describes each node by (``getAdjSa``), shape (n_nodes,): the arc below when
        there is one, else the arc above (a leaf, a join saddle: the arc above; the root: below)."""
        below = np.full(self.n_nodes, -1, np.int64)
        above = np.full(self.n_nodes, -1, np.int64)
        arcs = np.arange(self.n_arcs)
        has_up = self.arc_up >= 0
        below[self.arc_up[has_up][::-1]] = arcs[has_up][::-1]  # the first arc below, as TTK's [0]
        above[self.arc_down[::-1]] = arcs[::-1]
        return np.where(self.node_n_arcs_below == 1, below, np.where(self.node_n_arcs_above == 1, above, below))

    def node_arrays(self, positions: np.ndarray) -> dict:
        """Per-node arrays of TTK FTM's skeleton nodes: ``NodeId``, ``Scalar``, ``VertexId``,
        ``CriticalType``, ``RegionSize`` and ``RegionSpan`` of the node's arc (:attr:`node_arc`;
        TTK stores that span as an integer, truncated, and so does this)."""
        arc = self.node_arc
        return {N.NODE_ID: np.arange(self.n_nodes, dtype=np.int32), N.SCALAR: self.node_scalar.astype(np.float64),
                N.VERTEX_ID: self.node_vertex.astype(np.int64), N.CRITICAL_TYPE: self.node_type.astype(np.int32),
                N.REGION_SIZE: self.region_size[arc].astype(np.int32),
                N.REGION_SPAN: self.region_span(positions)[arc].astype(np.int32)}

    def arc_arrays(self, positions: np.ndarray) -> dict:
        """Per-arc arrays of TTK FTM's skeleton arcs: ``SegmentationId``, ``upNodeId``, ``downNodeId``,
        ``RegionSize``, ``RegionSpan`` (no ``RegionType``: TTK puts it on the segmentation only)."""
        return {N.SEGMENTATION_ID: np.arange(self.n_arcs, dtype=np.int32),
                N.UP_NODE_ID: self.arc_up.astype(np.int32), N.DOWN_NODE_ID: self.arc_down.astype(np.int32),
                N.REGION_SIZE: self.region_size.astype(np.int32), N.REGION_SPAN: self.region_span(positions)}

    def segmentation_arrays(self, positions: np.ndarray) -> dict:
        """Per-vertex arrays of TTK FTM's segmentation, shape (N,) each: ``SegmentationId`` and its
        arc's ``RegionSize``, ``RegionSpan``, ``RegionType`` (-1 where masked)."""
        seg = self.segmentation
        inside = seg >= 0
        arc = np.maximum(seg, 0)

        def per_vertex(values, dtype):
            return np.where(inside, values[arc], -1).astype(dtype)

        return {N.SEGMENTATION_ID: seg.astype(np.int32),
                N.REGION_SIZE: per_vertex(self.region_size, np.int32),
                N.REGION_SPAN: per_vertex(self.region_span(positions), np.float64),
                N.REGION_TYPE: per_vertex(self.region_type, np.int8)}

    @property
    def region_size(self) -> np.ndarray:
        """Vertices of each arc's segmentation, its end nodes excluded (TTK's RegionSize)."""
        counts = np.bincount(self.segmentation[self.segmentation >= 0], minlength=self.n_arcs)
        own = np.zeros(self.n_arcs, dtype=np.int64)
        seg_of_nodes = self.segmentation[self.node_vertex]
        np.add.at(own, seg_of_nodes[seg_of_nodes >= 0], 1)
        return counts - own


@dataclass
class Simplification:
    """Result of the persistence simplification (TTK ``TopologicalSimplificationByPersistence``,
    PairType Minimum-Saddle, TTK 1.2's localized algorithm).

    Attributes
    ----------
    threshold : float
        Absolute persistence threshold used; pairs with persistence <= threshold are removed.
    values : ndarray of float64, shape (N,)
        Simplified field (VTK order): every removed basin is flattened to its saddle's value.
    order : ndarray of int64, shape (N,)
        TTK's ``Order`` array of the simplified field: a strict total order compatible with
        ``values`` (-1 = masked).
    removed_minima, removed_saddles : ndarray of int64, shape (n_removed,)
        The minimum–saddle pairs removed.
    n_changed : int
        Vertices whose value changed.
    """

    threshold: float
    values: np.ndarray
    order: np.ndarray
    removed_minima: np.ndarray
    removed_saddles: np.ndarray
    n_changed: int


@dataclass
class TopologyResult:
    """Everything :func:`globscope.topology.analyze` computes.

    Attributes
    ----------
    shape : tuple of int
        Field shape ``(nx, ny[, nz[, nw]])``.
    n_nonfinite : int
        Unmasked vertices with non-finite values (ordered above every finite value).
    pairs : PersistencePairs
        Pairs of the *input* field.
    simplification : Simplification
        The simplified field (the input itself when no simplification was asked for).
    pairs_simplified : PersistencePairs
        Pairs of the simplified field.
    critical_points : CriticalPoints
        Of the simplified field.
    join_tree : JoinTree
        Of the simplified field.
    timings : dict
        Seconds per step.
    engine : dict
        Which engine computed it: ``{"name": "globscope"}``, or ``{"name": "ttk", "version",
        "plugin_version"}`` (:mod:`globscope.topology.native`).
    """

    shape: tuple
    n_nonfinite: int
    pairs: PersistencePairs
    simplification: Simplification
    pairs_simplified: PersistencePairs
    critical_points: CriticalPoints
    join_tree: JoinTree
    timings: dict = field(default_factory=dict)
    engine: dict = field(default_factory=lambda: {"name": "globscope"})

    @property
    def n_basins(self) -> int:
        """Number of basins (minima) of the simplified field."""
        return self.join_tree.n_leaves
