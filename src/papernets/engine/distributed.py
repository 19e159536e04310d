"""Process-group helpers: the trainer runs unchanged alone or under ``torchrun`` (one process per device).

Under torchrun (``WORLD_SIZE`` > 1) the trainer uses DistributedDataParallel (gloo on CPU, nccl on CUDA); each
process reads its own share of every epoch, metrics are summed across processes, and only rank 0 writes files.
Rank 0 is the reference copy: its run directory name, its batch-norm statistics and the weights it reads from
``best.pt`` are broadcast to the others, so that no other process needs to see rank 0's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from papernets.config import ConfigError

__all__ = [
    "DistInfo", "init_distributed", "all_reduce_sum", "broadcast_flag", "broadcast_object", "broadcast_module",
    "all_gather_object", "barrier", "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


DEVICES_ACCEPTED = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str, local_rank: int = 0, key: str = "train.device") -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` (this process's GPU) or ``cuda:N``.

    A device that is not there is a ``ConfigError`` naming ``key`` (the config key or flag it came from)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"{key} {name!r} is not a device; accepted: {DEVICES_ACCEPTED}.") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key} {name!r} is not a device papernets trains or evaluates on; accepted: "
                          f"{DEVICES_ACCEPTED}.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} is {name!r} but no CUDA device is available; use 'cpu' or 'auto'.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{key} is {name!r} but there are only {count} CUDA devices (cuda:0 to "
                              f"cuda:{count - 1}).")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group that torchrun set up, or describe the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers across processes (float64, so counts and sums stay exact)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every process if it is true on any (used for stop requests and divergence)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` (any picklable value) on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def broadcast_module(module: nn.Module, info: DistInfo, buffers_only: bool = False) -> None:
    """Copy rank 0's buffers (batch-norm running statistics), and unless ``buffers_only`` its parameters, into
    ``module`` on every process."""
    if not info.enabled:
        return
    tensors = [*module.buffers()] if buffers_only else [*module.parameters(), *module.buffers()]
    for t in tensors:
        if t.is_contiguous():
            dist.broadcast(t.data, src=0)
        else:  # e.g. a channels_last weight: broadcast a contiguous copy
            tmp = t.data.contiguous()
            dist.broadcast(tmp, src=0)
            t.data.copy_(tmp)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
