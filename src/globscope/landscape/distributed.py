"""Scale-out with ``torch.distributed``: chunks are dealt to ranks round-robin, rank 0 assembles.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``…):
NCCL on GPUs, gloo on the CPU. Results travel to rank 0 through a gloo group, so no shared file
system is assumed; each rank also keeps its finished chunks in its own chunk store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from globscope.environment import get as env_get

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Where this process stands: ``rank`` of ``world`` processes, and the gloo group for objects."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: object = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Context:
        """Rank and world size from torchrun's variables, without joining a process group."""
        rank = int(env_get("RANK", "0"))
        return cls(rank=rank, world=int(env_get("WORLD_SIZE", "1")), local_rank=int(env_get("LOCAL_RANK", str(rank))))

    def mine(self, n_chunks: int) -> range:
        """Chunk indices this rank computes: ``rank, rank + world, …`` (a range: never a list of
        what may be billions of chunks)."""
        return range(self.rank, n_chunks, self.world)

    def share(self, n_points: int, chunk_points: int) -> int:
        """Grid points of this rank's chunks (chunks of ``chunk_points``, the last one shorter),
        counted without walking the chunks."""
        from globscope.landscape.store import n_chunks

        total = n_chunks(n_points, chunk_points)
        mine = self.mine(total)
        if not mine:
            return 0
        last_short = mine[-1] == total - 1  # only the grid's last chunk is shorter
        return len(mine) * chunk_points - (total * chunk_points - n_points if last_short else 0)

    def gather(self, obj):
        """Objects of every rank, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def barrier(self):
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self):
        """Tear down the process group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def launched_by_torchrun() -> bool:
    return int(env_get("WORLD_SIZE", "1")) > 1


def context(device_type: str = "cpu") -> Context:
    """The distributed context: initialises the default process group under torchrun.

    Parameters
    ----------
    device_type : {"cpu", "cuda"}
        NCCL is used for CUDA, gloo otherwise; object exchange always goes through gloo.
    """
    if not (launched_by_torchrun() or (torch.distributed.is_available() and torch.distributed.is_initialized())):
        return Context()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    log.info("distributed: rank %d of %d (%s)", rank, world, dist.get_backend())
    return Context(rank, world, int(env_get("LOCAL_RANK", str(rank))), group, owns)


__all__ = ["Context", "context", "launched_by_torchrun"]
