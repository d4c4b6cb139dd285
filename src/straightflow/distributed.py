"""PyTorch DDP plumbing for ``torchrun`` launches (gloo on CPU, NCCL on GPU).

Outside torchrun everything degrades to a single process with rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import StraightflowError


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.world_size
        return values

    def all_max(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def process_group_size() -> int:
    """The world size of the initialised default process group, else 1 (no torch.distributed, or not initialised).

    For code that is handed no :class:`DistContext` (e.g. a coupling inside the DDP forward)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_group_rank() -> int:
    """This process's rank in the initialised default process group, else 0."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def all_gather_rows(*tensors: torch.Tensor, what: str = "the local batch") -> list[torch.Tensor]:
    """Each tensor's rows from every rank, concatenated in rank order (rank 0's rows first); every rank gets the same.

    A collective: every rank must call it, in the same order, with as many tensors of the same dtypes.
    All ranks must hold equally many rows (and elements) in each tensor, else every rank raises
    ``StraightflowError`` (naming ``what``). ``all_gather`` carries no gradient: the result is detached.
    With one process it returns the tensors (detached) as they are."""
    if process_group_size() <= 1:
        return [t.detach() for t in tensors]
    world = dist.get_world_size()
    # first the shapes, so unequal batches are an error on every rank instead of a hang or garbage
    sizes = torch.tensor([v for t in tensors for v in (t.shape[0], t.numel())], dtype=torch.int64,
                         device=tensors[0].device)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    table = torch.stack(all_sizes).cpu()
    if not bool((table == table[0]).all()):
        rows = table[:, 0].tolist()
        if len(set(rows)) > 1:
            raise StraightflowError(f"{what} must be the same size on every rank to gather it, but ranks "
                                    f"0..{world - 1} hold {rows} rows: give every rank an equal share of the batch")
        raise StraightflowError(f"{what} must have the same shape on every rank to gather it; the ranks' "
                                f"(rows, elements) per tensor differ: {table.tolist()}")
    out = []
    for t in tensors:
        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        out.append(torch.cat(parts))
    return out


def broadcast_from_main(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (in place; ``t`` must have the same shape and dtype on every rank).

    A collective: every rank must call it. With one process it returns ``t`` unchanged."""
    if process_group_size() > 1:
        dist.broadcast(t, src=0)
    return t



def init_distributed(device_name: str = "auto") -> DistContext:
    """Initialise the process group if launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=device)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
