"""Process-group setup shared by every training stage.

One code path serves a single CPU process, ``torchrun --nproc_per_node N`` and
``accelerate launch`` (both set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT):
NCCL when CUDA is present, gloo otherwise. Only the trainable parameters are all-reduced (DDP over
the small trainable module), so the frozen LLM is never replicated through the optimizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun/accelerate; otherwise a single process.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python number over all ranks (identity in a single process)."""
    if not info.distributed:
        return value
    t = torch.tensor([float(value)], device=info.device)
    torch_dist.all_reduce(t)
    return t.item() / info.world_size


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks, in place (identity in a single process)."""
    if info.distributed:
        torch_dist.all_reduce(t)
    return t


def barrier(info: DistInfo) -> None:
    if info.distributed:
        torch_dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
