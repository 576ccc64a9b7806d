"""Glue between torch tensors and the framework-free native module: raw addresses,
sizes and strides in, nothing framework-specific crosses the boundary."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from .. import _C

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
}
FLOAT_DTYPES = tuple(_DTYPE_NAMES)


def dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES[dtype]


def device_kind(tensor: torch.Tensor) -> str:
    if tensor.device.type == "cpu":
        return "cpu"
    if tensor.device.type == "cuda":
        return "cuda"
    raise ValueError(f"localmamba kernels run on cpu or cuda tensors, got device {tensor.device}")


def cuda_stream_of(tensor: torch.Tensor) -> int:
    if tensor.device.type != "cuda":
        return 0
    return torch.cuda.current_stream(tensor.device).cuda_stream


def cuda_workspace(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """Scratch memory of a CUDA kernel as a byte tensor on `like`'s device, so PyTorch's caching
    allocator owns and counts it (the kernels never allocate). CPU kernels need none: empty."""
    return torch.empty(nbytes if like.is_cuda else 0, dtype=torch.uint8, device=like.device)


def size1_strides(t: torch.Tensor) -> list:
    """Strides in elements; a size-1 axis reports stride 1 (its stride is never used)."""
    return [1 if n == 1 else st for n, st in zip(t.shape, t.stride())]


_INDEX_CACHE: Dict[Tuple[str, int, int, str], Tuple[torch.Tensor, torch.Tensor]] = {}


def scan_index_maps(directions: str, H: int, W: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(forward (K, Lmax), inverse (K, H*W)) int64 index tables on `device`, cached."""
    key = (directions, H, W, str(device))
    cached = _INDEX_CACHE.get(key)
    if cached is None:
        forward, inverse, max_length = _C.scan_index_maps(directions.split(","), H, W)
        k = len(directions.split(","))
        forward_t = torch.tensor(forward, dtype=torch.int64).view(k, max_length).to(device)
        inverse_t = torch.tensor(inverse, dtype=torch.int64).view(k, H * W).to(device)
        cached = (forward_t, inverse_t)
        _INDEX_CACHE[key] = cached
    return cached
