"""Data parallelism inside one training process: which rank it is, its share of each batch, sums
across ranks.

The ranks come from the environment that `torch.distributed.run` (torchrun) or `accelerate launch`
sets (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or from a process group the caller
already initialised. Without either, training is one process: rank 0 of 1, and nothing here
communicates.

Every rank builds the same global batches (same seed, same data) and takes a fixed slice of each,
weighting its loss so that DDP's gradient average equals the gradient of the global batch's mean
loss: the global batch size, the number of steps and the schedule match the one-process run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DataParallel:
    rank: int = 0
    world: int = 1
    owns_group: bool = False  # this process initialised the group, so it destroys it

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 shows progress, logs, saves the model and writes the result."""
        return self.rank == 0

    def share(self, batch: Sequence[int]) -> tuple[list[int], float]:
        """This rank's rows of a global batch, and the weight of their mean loss.

        The weight len(rows) * world / len(batch) makes DDP's average of the ranks' gradients the
        gradient of the mean loss over the whole batch. A rank whose slice is empty (a last batch
        smaller than the world) still runs one row, weighted 0, so DDP's all-reduce has every rank."""
        rows = local_rows(batch, self.rank, self.world)
        if not self.active:
            return rows, 1.0
        if not rows:
            return list(batch[:1]), 0.0
        return rows, len(rows) * self.world / len(batch)

    def sum(self, value: float, device: torch.device) -> float:
        """`value` summed over the ranks (itself when there is one process)."""
        if not self.active:
            return value
        import torch
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return float(total.item())

    def finish(self) -> None:
        """Wait until rank 0 has saved, then leave the group if this process made it.

        Only on success: after a failure the other ranks may never reach a collective, and the
        launcher (torchrun) ends them when one rank exits with an error."""
        if not (self.active or self.owns_group):
            return
        import torch.distributed as dist

        if self.active:
            dist.barrier()
        if self.owns_group:
            dist.destroy_process_group()


def local_rows(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """Rank `rank`'s rows of a global batch: every world-th row from position `rank`. The batch is
    sorted by length, so the interleaved slices hold similar lengths (similar work per rank)."""
    return [int(i) for i in batch[rank::world]]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def join(device_setting: str) -> tuple[DataParallel, torch.device]:
    """This process's place in data-parallel training, and the device it trains on.

    Uses a process group that is already initialised, else initialises one from the launcher's
    environment (gloo on CPU, NCCL on CUDA). On CUDA each process takes the GPU of its LOCAL_RANK."""
    import torch
    import torch.distributed as dist

    from perennial.models.inference import resolve_device

    device = resolve_device(device_setting)
    owns = False
    if not (dist.is_available() and dist.is_initialized()):
        if world_size_from_env() <= 1:
            return DataParallel(), device
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if device.type == "cuda":
            # Before the group: NCCL binds each rank to the current device.
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    world, rank = dist.get_world_size(), dist.get_rank()
    if world <= 1:
        return DataParallel(owns_group=owns), device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return DataParallel(rank=rank, world=world, owns_group=owns), device
