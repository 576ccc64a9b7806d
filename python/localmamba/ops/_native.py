"""Glue between torch tensors and the framework-free native module: raw addresses,
sizes and strides in, nothing framework-specific crosses the boundary."""
from __future__ import annotations

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
