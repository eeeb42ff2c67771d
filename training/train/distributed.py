"""Data-parallel plumbing: process-group set-up from torchrun's environment, and small collectives.

Launch with ``torchrun --nproc_per_node=N -m training.train ...`` (add ``--standalone`` on one
machine). Each process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment torchrun sets;
the backend is NCCL when the run is on CUDA and gloo on CPU. Without those variables everything
here degrades to a single process and the collectives become no-ops.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistContext:
    """Where this process sits among the data-parallel processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0


def context_from_env() -> DistContext:
    """The torchrun environment, or a single process when it is absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    return DistContext(
        rank=int(os.environ["RANK"]),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
    )


def resolve_device(preference: str, ctx: DistContext) -> torch.device:
    """``auto`` -> this process's GPU if there is one, else the CPU; ``cuda`` -> GPU local_rank."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", ctx.local_rank)
    device = torch.device(preference)
    if device.type == "cuda" and ctx.enabled and device.index not in (None, ctx.local_rank):
        raise ValueError(f"with several processes use device 'cuda' or 'auto', not {preference!r}")
    return device


def setup(device_preference: str) -> tuple[DistContext, torch.device]:
    """Join the process group (once per process) and pick this process's device."""
    ctx = context_from_env()
    device = resolve_device(device_preference, ctx)
    if ctx.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return ctx, device


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over processes in place (no-op for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every tensor of the state dict, bit for bit, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gather_digests(model: nn.Module) -> list[str]:
    """Every process's `weights_digest`, in rank order (one entry for a single process)."""
    digest = weights_digest(model)
    if not (dist.is_available() and dist.is_initialized()):
        return [digest]
    out: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, digest)
    return [d for d in out if d is not None]
