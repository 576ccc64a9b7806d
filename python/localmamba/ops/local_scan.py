"""local_scan / local_reverse as PyTorch custom ops over the native indexed gather.

Both are pure data movement, so the native and reference paths agree exactly, and each
one's backward is the other: scanning is a gather whose adjoint sums the K sequences back
into spatial order.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from . import _native, reference
from ._checks import LAYOUTS, ArgChecks, check_grid
from .backend import resolve_backend
from .directions import ScanDirection, scan_length
from .scan_table import parsed_directions, scan_table

__all__ = ["scan_order", "local_scan", "local_reverse", "LAYOUTS"]

def scan_order(direction: str, H: int, W: int) -> torch.Tensor:
    """Spatial positions (int64, row-major p = i*W + j) visited by `direction`; -1 = padding."""
    from .. import _C

    if not isinstance(direction, str):
        raise TypeError(f"direction must be a str such as 'h' or 'w7_flip', got {type(direction).__name__}")
    check_grid(H, W)
    return torch.tensor(_C.scan_order(direction, H, W), dtype=torch.int64)


# ----------------------------------------------------------------------------- checks
_scan_checks = ArgChecks("local_scan")
_reverse_checks = ArgChecks("local_reverse")


def _spatial_shape(layout: str, leading: Tuple[int, ...], C: int, H: int, W: int) -> Tuple[int, ...]:
    if layout == "BCHW":
        return (*leading, C, H, W)
    if layout == "BCL":
        return (*leading, C, H * W)
    return (*leading, H * W, C)


def _check_spatial(checks: ArgChecks, name: str, x: torch.Tensor, layout: str, H: int, W: int,
                   per_direction_k: Optional[int]) -> int:
    """Validates a spatial-order tensor and returns its channel count."""
    lead = 1 if per_direction_k is None else 2
    rank = {"BCHW": 4, "BCL": 3, "BLC": 3}[layout] + lead - 1
    if x.dim() != rank:
        expected = _spatial_shape(layout, ("B",) if per_direction_k is None else ("B", "K"), "C", "H", "W")
        raise ValueError(checks.message(f"{name} must have shape {expected} for layout {layout!r}, got {tuple(x.shape)}"))
    C = x.shape[lead + 1] if layout == "BLC" else x.shape[lead]
    expected = _spatial_shape(layout, tuple(x.shape[:lead]), C, H, W)
    if tuple(x.shape) != expected:
        raise ValueError(checks.message(
            f"{name} has shape {tuple(x.shape)} but H={H}, W={W} and layout {layout!r} need {expected}"
            f" (H*W = {H * W} tokens)"
        ))
    if per_direction_k is not None and x.shape[1] != per_direction_k:
        raise ValueError(checks.message(f"{name} has {x.shape[1]} directions along dim 1, expected {per_direction_k}"))
    return C


# ----------------------------------------------------------------------------- native ops
def _token_strides(x: torch.Tensor, layout: str, lead: int) -> Tuple[torch.Tensor, int, int]:
    """Returns (x viewed as (..., C, L) or (..., L, C), channel stride, token stride)."""
    if layout == "BCHW":
        x = x.reshape(*x.shape[:lead], x.shape[lead], -1)  # a view whenever H and W can merge
        return x, x.stride(lead), x.stride(lead + 1)
    if layout == "BCL":
        return x, x.stride(lead), x.stride(lead + 1)
    return x, x.stride(lead + 1), x.stride(lead)


@torch.library.custom_op("localmamba::local_scan", mutates_args=())
def _local_scan_op(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, H: int, W: int, layout: str,
                   per_direction: bool) -> torch.Tensor:
    """Gathers through a scan table's ``index`` (K, Lmax); ``inverse`` (K, H*W) is for the backward."""
    K, lmax = index.shape
    lead = 2 if per_direction else 1
    xv, stride_c, stride_t = _token_strides(x, layout, lead)
    B = x.shape[0]
    C = x.shape[-1] if layout == "BLC" else x.shape[lead]
    out = torch.empty(B, K, C, lmax, dtype=x.dtype, device=x.device)
    _native.indexed_gather(
        xv, out, (B, K, C, lmax, H * W), (xv.stride(0), xv.stride(1) if per_direction else 0, stride_c, stride_t),
        out.stride(), index, False,
    )
    return out


@_local_scan_op.register_fake
def _(x, index, inverse, H, W, layout, per_direction):
    K, lmax = index.shape
    C = x.shape[-1] if layout == "BLC" else x.shape[2 if per_direction else 1]
    return x.new_empty(x.shape[0], K, C, lmax)


@torch.library.custom_op("localmamba::local_reverse", mutates_args=())
def _local_reverse_op(y: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, H: int, W: int, layout: str,
                      reduce_sum: bool) -> torch.Tensor:
    """Scatters back through a scan table's ``inverse`` (K, H*W); ``index`` is for the backward."""
    B, K, C, lmax = y.shape
    L = H * W
    if reduce_sum:
        out = torch.empty(_spatial_shape(layout, (B,), C, H, W), dtype=y.dtype, device=y.device)
        ov, stride_c, stride_t = _token_strides(out, layout, 1)
        dst_strides = (ov.stride(0), 0, stride_c, stride_t)
    else:
        out = torch.empty(_spatial_shape(layout, (B, K), C, H, W), dtype=y.dtype, device=y.device)
        ov, stride_c, stride_t = _token_strides(out, layout, 2)
        dst_strides = (ov.stride(0), ov.stride(1), stride_c, stride_t)
    _native.indexed_gather(y, ov, (B, K, C, L, lmax), y.stride(), dst_strides, inverse, reduce_sum)
    return out


@_local_reverse_op.register_fake
def _(y, index, inverse, H, W, layout, reduce_sum):
    B, K, C, _ = y.shape
    return y.new_empty(_spatial_shape(layout, (B,) if reduce_sum else (B, K), C, H, W))


def _local_scan_setup(ctx, inputs, output):
    _, index, inverse, ctx.H, ctx.W, ctx.layout, ctx.per_direction = inputs
    ctx.save_for_backward(index, inverse)


def _local_scan_backward(ctx, grad):
    index, inverse = ctx.saved_tensors
    grad_x = _local_reverse_op(grad, index, inverse, ctx.H, ctx.W, ctx.layout, not ctx.per_direction)
    return grad_x, None, None, None, None, None, None


def _local_reverse_setup(ctx, inputs, output):
    _, index, inverse, ctx.H, ctx.W, ctx.layout, ctx.reduce_sum = inputs
    ctx.save_for_backward(index, inverse)


def _local_reverse_backward(ctx, grad):
    index, inverse = ctx.saved_tensors
    grad_y = _local_scan_op(grad.contiguous(), index, inverse, ctx.H, ctx.W, ctx.layout, not ctx.reduce_sum)
    return grad_y, None, None, None, None, None, None


_local_scan_op.register_autograd(_local_scan_backward, setup_context=_local_scan_setup)
_local_reverse_op.register_autograd(_local_reverse_backward, setup_context=_local_reverse_setup)


# ----------------------------------------------------------------------------- public API
def _canonical(directions) -> Tuple[ScanDirection, ...]:
    return parsed_directions(directions)


def local_scan(
    x: torch.Tensor,
    directions: Union[str, Sequence[str]],
    H: int,
    W: int,
    layout: str = "BCHW",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Gathers spatial tokens into K scanned sequences: returns (B, K, C, Lmax).

    x: (B, C, H, W) for layout "BCHW", (B, C, H*W) for "BCL", (B, H*W, C) for "BLC".
    Padding tokens (windows that overhang the grid, and the tail of directions shorter than
    the longest) are zeros.
    """
    dirs = _canonical(directions)
    check_grid(H, W)
    _scan_checks.choice("layout", layout, LAYOUTS)
    _scan_checks.kernel_tensor("x", x)
    _check_spatial(_scan_checks, "x", x, layout, H, W, None)
    if resolve_backend(backend) == "reference":
        return reference.local_scan(x, list(dirs), H, W, layout)
    table = scan_table(dirs, H, W, x.device)
    return _local_scan_op(x, table.index, table.inverse, H, W, layout, False)


def local_reverse(
    y: torch.Tensor,
    directions: Union[str, Sequence[str]],
    H: int,
    W: int,
    reduce: Optional[str] = None,
    layout: str = "BCHW",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Scatters K scanned sequences (B, K, C, Lmax) back to spatial order, dropping padding.

    Returns (B, K, C, H, W) for layout "BCHW", (B, K, C, H*W) for "BCL", (B, K, H*W, C) for
    "BLC"; with reduce="sum" the K axis is summed (in fp32 for 16-bit inputs) and removed.
    """
    dirs = _canonical(directions)
    check_grid(H, W)
    checks = _reverse_checks
    checks.choice("layout", layout, LAYOUTS)
    checks.choice("reduce", reduce, (None, "sum"))
    checks.kernel_tensor("y", y)
    if y.dim() != 4:
        raise ValueError(checks.message(f"y must have shape (B, K, C, Lmax), got {tuple(y.shape)}"))
    if y.shape[1] != len(dirs):
        raise ValueError(checks.message(f"y has {y.shape[1]} sequences along dim 1 but {len(dirs)} directions were given"))
    lmax = max(scan_length(d, H, W) for d in dirs)
    if y.shape[3] != lmax:
        raise ValueError(checks.message(
            f"y has length {y.shape[3]} along dim 3, but directions {[d.name for d in dirs]} on a {H}x{W} grid "
            f"need Lmax={lmax}"
        ))
    if resolve_backend(backend) == "reference":
        return reference.local_reverse(y, list(dirs), H, W, reduce, layout)
    table = scan_table(dirs, H, W, y.device)
    return _local_reverse_op(y, table.index, table.inverse, H, W, layout, reduce == "sum")
