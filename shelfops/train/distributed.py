"""Data-parallel training under torchrun (gloo on CPU, NCCL on GPU), or one process.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything is one process.
Every rank walks the same global batches; rank r takes rows r::world of each, and DDP
averages the gradients, so a step equals the single-process step on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def teardown(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()


def shard(batch: Any, d: Dist) -> Any:
    """This rank's rows of a global batch (dicts, tuples, tensors, lists)."""
    if not d.active:
        return batch
    if isinstance(batch, dict):
        return {k: shard(v, d) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(shard(v, d) for v in batch)
    if isinstance(batch, (list, torch.Tensor)):
        return batch[d.rank :: d.world]
    return batch


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device(f"cuda:{local}")
    return torch.device("cpu")
