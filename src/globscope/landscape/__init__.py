"""The loss-field engine: decode a latent grid, evaluate the real loss batched, resumably.

Modules: ``grid`` (the latent grid), ``evaluation`` (batched evaluation of many weight vectors),
``batchnorm`` (statistics of decoded models), ``store`` (finished chunks on disk, resume),
``distributed`` (torchrun scale-out), ``driver`` (the whole run, ``landscape.vti``/``.json``).
Core layer: no VTK, no ParaView. The landscape stage (:func:`globscope.stages.landscape`) is the
entry point for a manifold file.
"""

from globscope.landscape.driver import compute_field, compute_landscape, write_fields
from globscope.landscape.evaluation import BatchedEvaluator, resolve_device
from globscope.landscape.grid import LatentGrid, nearest_model
from globscope.landscape.store import ChunkStore

__all__ = ["LatentGrid", "nearest_model", "BatchedEvaluator", "resolve_device", "ChunkStore", "compute_landscape",
           "compute_field", "write_fields"]
