"""Names and codes that every face shares: TTK's array names and codes, and the choices a user makes
(manifold method, BatchNorm mode, device, latent dimension).

TTK's conventions make our outputs and native TTK's interchangeable (``CriticalType`` and
``RegionType`` codes, array names of the persistence diagram, merge tree and simplification).
Choices carry stable integer codes because ParaView states store the code of an enumeration, not
its text: a new choice gets a new code, and no code ever changes meaning.
"""

from __future__ import annotations

from enum import IntEnum

from globscope.errors import GlobscopeError


class CriticalType(IntEnum):
    """TTK's ``CriticalType`` of a vertex (``ScalarFieldCriticalPoints``, merge-tree nodes)."""

    MINIMUM = 0
    SADDLE1 = 1
    SADDLE2 = 2
    MAXIMUM = 3
    DEGENERATE = 4
    REGULAR = 5


class RegionType(IntEnum):
    """TTK FTM's ``RegionType`` (``ArcType``) of a merge-tree arc and of its segmentation."""

    MIN_ARC = 0  # from a minimum: a basin
    MAX_ARC = 1  # to the maximum (the root of a join tree)
    SADDLE1_ARC = 2  # between two join saddles
    SADDLE2_ARC = 3
    SADDLE1_SADDLE2_ARC = 4


class PairType(IntEnum):
    """TTK's ``PairType`` of a persistence pair (dimension of the feature)."""

    MINIMUM_SADDLE = 0
    SADDLE_SADDLE = 1
    SADDLE_MAXIMUM = 2


class TreeType(IntEnum):
    """TTK FTM's ``TreeType`` (the merge tree filter's choice)."""

    JOIN = 0  # merge tree of the sublevel sets: leaves are the minima (basins of a loss)
    SPLIT = 1
    CONTOUR = 2


# the loss field's point arrays, in the order landscape.vti holds them: log_loss is log10 of loss
LOSS, LOG_LOSS, ACCURACY, DISTANCE = "loss", "log_loss", "accuracy", "distance"
FIELD_ARRAYS = (LOSS, LOG_LOSS, ACCURACY, DISTANCE)

# TTK's array names
VERTEX_SCALAR_FIELD = "ttkVertexScalarField"
CRITICAL_TYPE = "CriticalType"
PAIR_IDENTIFIER = "PairIdentifier"
PAIR_TYPE = "PairType"
PERSISTENCE = "Persistence"
BIRTH = "Birth"  # a cell array in TTK's diagram (there is no Death array: a point's y is its death)
IS_FINITE = "IsFinite"
COORDINATES = "Coordinates"  # a diagram point's position in the domain
NODE_ID = "NodeId"
VERTEX_ID = "VertexId"
SCALAR = "Scalar"
UP_NODE_ID = "upNodeId"
DOWN_NODE_ID = "downNodeId"
SEGMENTATION_ID = "SegmentationId"
REGION_SIZE = "RegionSize"
REGION_SPAN = "RegionSpan"
REGION_TYPE = "RegionType"  # on the segmentation only (TTK's arcs carry none)
MASK_SCALAR_FIELD = "ttkMaskScalarField"  # arc points: 0 at a node, 1 at a sampled regular vertex


def order_array(scalar: str) -> str:
    """The name TTK's simplification gives the vertex order of the simplified ``scalar`` array."""
    return f"{scalar}_Order"


class Choices:
    """Names with stable integer codes (a ParaView enumeration's values).

    Parameters
    ----------
    codes : dict of str to int
        Each name's code; codes are never reused or renumbered.
    """

    def __init__(self, what: str, codes: dict[str, int]):
        if len(set(codes.values())) != len(codes):
            raise ValueError(f"{what}: codes must be distinct")
        self.what = what
        self.codes = dict(codes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.codes)

    def __iter__(self):
        return iter(self.codes)

    def __contains__(self, name) -> bool:
        return name in self.codes

    def __len__(self) -> int:
        return len(self.codes)

    def name(self, value) -> str:
        """The name of a code or of a name (as given by a state, a proxy or the CLI)."""
        if isinstance(value, str) and value in self.codes:
            return value
        for n, c in self.codes.items():
            if not isinstance(value, str) and value == c:
                return n
        raise GlobscopeError(f"unknown {self.what} {value!r}: choose one of {', '.join(self.codes)}")

    def code(self, name) -> int:
        return self.codes[self.name(name)]

    def __repr__(self) -> str:
        return f"Choices({self.what!r}, {self.codes})"


MANIFOLD_METHODS = Choices("manifold method", {"autoencoder": 0, "pca": 1, "kernel-pca": 2, "umap": 3})
BN_MODES = Choices("BatchNorm mode", {"recompute": 0, "reference": 1})
DEVICES = Choices("device", {"auto": 0, "cpu": 1, "cuda": 2})
# how the engine evaluates batches of models ("auto" measures the others on the first batch)
FORMULATIONS = ("auto", "stacked", "vmap", "loop", "factored", "grouped")
# latent dimensions of a manifold; ParaView shows fields of the first two as one image
LATENT_DIMS = (2, 3, 4)
IMAGE_DIMS = (2, 3)

__all__ = ["CriticalType", "RegionType", "PairType", "TreeType", "Choices", "MANIFOLD_METHODS", "BN_MODES",
           "DEVICES", "FORMULATIONS", "LATENT_DIMS", "IMAGE_DIMS", "order_array", "LOSS", "LOG_LOSS", "ACCURACY",
           "DISTANCE", "FIELD_ARRAYS", "VERTEX_SCALAR_FIELD", "CRITICAL_TYPE", "PAIR_IDENTIFIER", "PAIR_TYPE",
           "PERSISTENCE", "BIRTH", "IS_FINITE", "COORDINATES", "NODE_ID", "VERTEX_ID", "SCALAR", "UP_NODE_ID",
           "DOWN_NODE_ID", "SEGMENTATION_ID", "REGION_SIZE", "REGION_SPAN", "REGION_TYPE", "MASK_SCALAR_FIELD",
           "TOPOLOGY_ENGINES", "TOPOLOGY_OUTPUTS", "BUILTIN_TASKS"]

# the built-in tasks' names (globscope.tasks.BUILTIN_TASKS builds them; a test keeps the two equal)
BUILTIN_TASKS = ("digits-mlp", "fashion-mlp", "fashion-cnn", "fashion-resnet", "mnist-mlp")

# where the topology stage runs: Globscope's engine, native TTK through pvpython, or TTK when it runs
TOPOLOGY_ENGINES = ("globscope", "ttk", "auto")
# what `globscope topology` can write besides topology.json: the CSV tables, the merge tree
# (topology.vtu) and the simplified field with its basins (topology.vti, .npz for d = 4)
TOPOLOGY_OUTPUTS = ("tables", "tree", "field")
