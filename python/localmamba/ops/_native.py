"""Glue between torch tensors and the framework-free native module: raw addresses,
sizes and strides in, nothing framework-specific crosses the boundary."""
from __future__ import annotations

import contextlib
from typing import Dict, List, Sequence, Tuple

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


def device_context(tensor: torch.Tensor):
    """Makes `tensor`'s CUDA device current for a native call (kernels launch on the current device)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


def indexed_gather(src: torch.Tensor, dst: torch.Tensor, sizes: Sequence[int], src_strides: Sequence[int],
                   dst_strides: Sequence[int], index: torch.Tensor, sum_over_directions: bool) -> None:
    """The native indexed gather / scatter-sum between two strided (B, K, C, L) views (see indexed_gather.h);
    sizes = (batch, directions, channels, out_length, src_length)."""
    with device_context(src):
        _C.indexed_gather(
            src.data_ptr(), dst.data_ptr(), dtype_name(src.dtype), device_kind(src), list(sizes), list(src_strides),
            list(dst_strides), index.data_ptr(), sum_over_directions, cuda_stream_of(src),
        )


def cuda_workspace(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """Scratch memory of a CUDA kernel as a byte tensor on `like`'s device, so PyTorch's caching
    allocator owns and counts it (the kernels never allocate). CPU kernels need none: empty."""
    return torch.empty(nbytes if like.is_cuda else 0, dtype=torch.uint8, device=like.device)


def size1_strides(t: torch.Tensor) -> list:
    """Strides in elements; a size-1 axis reports stride 1 (its stride is never used)."""
    return [1 if n == 1 else st for n, st in zip(t.shape, t.stride())]
