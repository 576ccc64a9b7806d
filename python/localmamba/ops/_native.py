"""Glue between torch tensors and the framework-free native module: each call fills a named native
params struct (addresses, sizes, strides); nothing framework-specific crosses the boundary."""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

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
    batch, directions, channels, out_length, src_length = sizes
    params = _C.IndexedGatherParams(
        dtype=dtype_name(src.dtype), batch=batch, num_directions=directions, channels=channels,
        out_length=out_length, src_length=src_length, src=tensor_arg(src, src_strides),
        dst=tensor_arg(dst, dst_strides), index=index.data_ptr(), sum_over_directions=sum_over_directions,
        cuda_stream=cuda_stream_of(src),
    )
    with device_context(src):
        _C.indexed_gather(device_kind(src), params)


def cuda_workspace(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """Scratch memory of a CUDA kernel as a byte tensor on `like`'s device, so PyTorch's caching
    allocator owns and counts it (the kernels never allocate). CPU kernels need none: empty."""
    return torch.empty(nbytes if like.is_cuda else 0, dtype=torch.uint8, device=like.device)


def attach_workspace(params, nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """Points a native params struct at fresh CUDA scratch memory of `nbytes` (none on CPU); the caller
    keeps the returned tensor alive until the native call has returned."""
    workspace = cuda_workspace(nbytes, like)
    params.workspace, params.workspace_bytes = workspace.data_ptr(), workspace.numel()
    return workspace


def size1_strides(t: torch.Tensor) -> List[int]:
    """Strides in elements; a size-1 axis reports stride 1 (its stride is never used)."""
    return [1 if n == 1 else st for n, st in zip(t.shape, t.stride())]


def tensor_arg(t: Optional[torch.Tensor], strides: Optional[Sequence[int]] = None):
    """`t` as the native params structs take a tensor: its address and strides in elements (its own,
    size-1 axes reporting 1, unless `strides` views it differently); None stays None."""
    if t is None:
        return None
    return _C.TensorArg(t.data_ptr(), size1_strides(t) if strides is None else list(strides))


def unit_last(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """`t` with stride 1 along its last axis (copied only when it has not; any size-1 axis qualifies)."""
    return t if t is None or t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()
