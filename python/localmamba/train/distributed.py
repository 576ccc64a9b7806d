"""Distributed helpers for runs launched by `torchrun` (NCCL on GPU, gloo on CPU).

Without torchrun's environment (RANK / WORLD_SIZE / LOCAL_RANK) everything degrades to a
single process, so the same code path serves both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "resolve_device", "all_reduce_sum", "broadcast_object", "barrier"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={spec!r} but no CUDA device is available (use train.device=cpu)")
        if spec == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(spec)
    if spec != "cpu":
        raise ValueError(f"unknown device {spec!r}")
    return torch.device("cpu")


def init_distributed(device_spec: str = "auto") -> "tuple[DistInfo, torch.device]":
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), resolve_device(device_spec)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, backend), device


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        # Tear down together: a rank that destroys its gloo group while a peer still talks to
        # it can make the peer's transport thread abort the process.
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in float64 on the tensor's device; returns a new tensor)."""
    t = t.detach().clone()
    if _active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if _active():
        dist.barrier()
