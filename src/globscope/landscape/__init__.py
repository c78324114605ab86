"""The loss-field engine: decode a latent grid, evaluate the real loss batched, resumably.

Modules: ``grid`` (the latent grid), ``evaluation`` (batched evaluation of many weight vectors),
``batchnorm`` (statistics of decoded models), ``store`` (finished chunks on disk, resume),
``distributed`` (torchrun scale-out), ``driver`` (the whole run, ``landscape.vti``/``.json``).
Core layer: no VTK, no ParaView.
"""

from globscope.landscape.batchnorm import BN_MODES
from globscope.landscape.driver import (
                                        DEFAULT_CHUNK_POINTS,
                                        compute_field,
                                        compute_landscape,
                                        run_landscape,
                                        write_fields,
)
from globscope.landscape.evaluation import FORMULATIONS, BatchedEvaluator, resolve_device
from globscope.landscape.grid import LatentGrid, nearest_model
from globscope.landscape.store import ChunkStore

__all__ = ["LatentGrid", "nearest_model", "BatchedEvaluator", "FORMULATIONS", "BN_MODES", "resolve_device",
           "ChunkStore", "compute_landscape", "compute_field", "run_landscape", "write_fields",
           "DEFAULT_CHUNK_POINTS"]
