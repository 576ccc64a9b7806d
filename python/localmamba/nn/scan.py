"""The selective scan as the layers call it: backend dispatch plus FLOP accounting.

Layers never call a kernel directly; they call :func:`selective_scan` here, which

* dispatches to ``localmamba.ops.selective_scan`` (native C++/CUDA kernels, or the pure-PyTorch
  reference when ``backend="reference"``), and
* reports each call to an active :func:`count_scans` context, which the profiler uses to add
  the scan's cost (9·B·L·D·N + B·D·L, the convention of the release and of fvcore handles for
  Mamba) to the matmul/convolution count.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import torch

from ..ops.backend import resolve_backend

__all__ = [
    "selective_scan",
    "directional_selective_scan",
    "directional_scan_channels_last",
    "causal_depthwise_conv1d",
    "causal_depthwise_conv1d_channels_last",
    "count_scans",
    "ScanRecord",
]


@dataclass
class ScanRecord:
    batch: int
    dim: int
    length: int
    d_state: int

    @property
    def flops(self) -> int:
        """Multiply-adds of one scan: 9·B·L·D·N + B·D·L (the D skip term; z gating not counted)."""
        return 9 * self.batch * self.length * self.dim * self.d_state + self.batch * self.dim * self.length


@dataclass
class _ScanCounter:
    skip_compute: bool
    records: List[ScanRecord] = field(default_factory=list)
    other_flops: Dict[str, int] = field(default_factory=dict)


def record_flops(kind: str, flops: int) -> None:
    """Reports multiply-adds of an op that the dispatch-level counter cannot see as such."""
    for counter in _counters():
        counter.other_flops[kind] = counter.other_flops.get(kind, 0) + int(flops)


_local = threading.local()


def _counters() -> List[_ScanCounter]:
    if torch.compiler.is_compiling():  # counting is an eager-mode tool; a graph must not guard on it
        return []
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@contextlib.contextmanager
def count_scans(skip_compute: bool = False) -> Iterator[List[ScanRecord]]:
    """Records every selective scan (and other custom-counted op) run inside the block.

    With ``skip_compute=True`` the scans are not run (their outputs are zeros of the right shape
    and dtype): FLOP counting only needs shapes, and this keeps profiling fast on any backend.
    """
    counter = _ScanCounter(skip_compute)
    _counters().append(counter)
    try:
        yield counter
    finally:
        _counters().pop()


def causal_depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Causal depthwise conv along the last axis: y[..., t] = bias + sum_k w[k] x[..., t - (K-1) + k].

    x: (B, C, L); weight: (C, K); bias: (C,) or None. Computed as K shifted multiply-adds, which
    is several times faster on CPU than a grouped conv1d; counted as B*C*L*K multiply-adds.
    """
    B, C, L = x.shape
    K = weight.shape[-1]
    record_flops("causal_conv1d", B * C * L * K)
    xp = torch.nn.functional.pad(x, (K - 1, 0))
    w = weight.to(x.dtype)
    if bias is not None:
        out = torch.addcmul(bias.to(x.dtype)[:, None], w[:, 0, None], xp[..., 0:L])
    else:
        out = xp[..., 0:L] * w[:, 0, None]
    for k in range(1, K):
        out = out.addcmul(w[:, k, None], xp[..., k:k + L])
    return out


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Mamba's selective scan (SPEC section 1.2); u, delta, z: (B, D, L); B, C: (B, N, L) or (B, G, N, L)."""
    name = resolve_backend(backend)
    stack = _counters()
    if stack:
        record = ScanRecord(u.shape[0], u.shape[1], u.shape[2], A.shape[1])
        for counter in stack:
            counter.records.append(record)
        if any(c.skip_compute for c in stack):
            return torch.zeros_like(u)
    from ..ops.selective_scan import selective_scan as _op

    return _op(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus, backend=name)


def directional_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    directions=None,
    H: Optional[int] = None,
    W: Optional[int] = None,
    *,
    index: Optional[torch.Tensor] = None,
    num_tokens: Optional[int] = None,
    D: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = True,
    z: Optional[torch.Tensor] = None,
    dt_proj_weight: Optional[torch.Tensor] = None,
    layout: str = "BCL",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """The fused K-direction scan (``localmamba.ops.directional_selective_scan``) with FLOP accounting.

    Counted as one selective scan over K·D channels at the padded length Lmax (as the composition it
    replaces), plus the in-kernel delta projection (B·K·D·R·Lmax) when ``dt_proj_weight`` is given.
    ``num_tokens`` (tokens of the output) only shapes the zeros returned when a profiler skips compute.
    """
    from ..ops.directional_scan import directional_selective_scan as _op
    from ..ops.directions import max_scan_length, parse_directions
    from ..ops.scan_table import ScanTable

    if isinstance(index, ScanTable):
        K, lmax = index.index.shape
        num_tokens = index.num_tokens if num_tokens is None else num_tokens
    elif index is not None:
        K, lmax = index.shape
    else:
        K, lmax = len(parse_directions(directions)), max_scan_length(directions, H, W)
    tokens = num_tokens if num_tokens is not None else u.shape[-1] if u.dim() == 3 else H * W
    batch, dim = u.shape[0], A.shape[0] // K
    stack = _counters()
    if stack:
        record = ScanRecord(batch, K * dim, lmax, A.shape[1])
        for counter in stack:
            counter.records.append(record)
        if dt_proj_weight is not None:
            record_flops("dt_proj", batch * K * dim * dt_proj_weight.shape[-1] * lmax)
        if any(c.skip_compute for c in stack):
            shape = (batch, K, tokens, dim) if layout == "BLC" else (batch, K, dim, tokens)
            return u.new_zeros(shape)
    return _op(u, delta, A, B, C, directions, H, W, index=index, D=D, delta_bias=delta_bias,
               delta_softplus=delta_softplus, z=z, dt_proj_weight=dt_proj_weight, layout=layout,
               backend=resolve_backend(backend))


def directional_scan_channels_last(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                                   C: torch.Tensor, index: torch.Tensor, num_tokens: int, **kwargs) -> torch.Tensor:
    """The channels-last directional scan with the same FLOP accounting as
    :func:`directional_selective_scan` (one scan over K·D channels at the padded length, plus the
    in-kernel delta projection): forward-only (``localmamba.ops.directional_scan_channels_last``)
    when no gradient is wanted, else with its native backward
    (``localmamba.ops.directional_scan_train.directional_scan_channels_last_train``, no ``weights``)."""
    from ..ops.directional_scan_infer import channels_last_scan_supported
    from ..ops.directional_scan_infer import directional_scan_channels_last as _infer_op
    from ..ops.directional_scan_train import directional_scan_channels_last_train as _train_op

    tensors = [t for t in (u, delta, A, B, C, *kwargs.values()) if isinstance(t, torch.Tensor)]
    _op = _infer_op if channels_last_scan_supported(*tensors) else _train_op

    K, lmax = index.shape
    batch, dim = u.shape[0], u.shape[-1]
    stack = _counters()
    if stack:
        record = ScanRecord(batch, K * dim, lmax, A.shape[1])
        for counter in stack:
            counter.records.append(record)
        weight = kwargs.get("dt_proj_weight")
        if weight is not None:
            record_flops("dt_proj", batch * K * dim * weight.shape[-1] * lmax)
        if any(c.skip_compute for c in stack):
            return u.new_zeros(batch, K, num_tokens, dim)
    return _op(u, delta, A, B, C, index, num_tokens, **kwargs)


def _causal_conv_no_pad(x: torch.Tensor, w: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """out[t] = ((bias + x[t-taps+1] w_0) + x[t-taps+2] w_1) + ... + x[t] w_{taps-1}, taps in that order
    (the rounding of a zero-padded convolution), without the padded copy. w: (K, 1, taps, C)."""
    L, taps = x.shape[2], w.shape[2]
    out = torch.zeros_like(x) if bias is None else bias[:, None].expand_as(x).clone()
    for k in range(taps):
        shift = taps - 1 - k  # out[t] += x[t - shift] w_k
        if shift < L:
            out[:, :, shift:].addcmul_(x[:, :, :L - shift], w[:, :, k])
    return out


class _CausalConvSiLU(torch.autograd.Function):
    """silu(causal depthwise conv) on channels-last sequences with a hand-written backward: no padded
    copy and no per-tap autograd nodes (one silu_backward, taps multiply-adds for dx, taps products
    summed for dw)."""

    @staticmethod
    def forward(ctx, x, w, bias):
        pre = _causal_conv_no_pad(x, w, bias)
        ctx.save_for_backward(x, w, pre)
        ctx.has_bias = bias is not None
        return torch.nn.functional.silu(pre)

    @staticmethod
    def backward(ctx, dy):
        x, w, pre = ctx.saved_tensors
        L, taps = x.shape[2], w.shape[2]
        head = taps - 1
        dpre = torch.ops.aten.silu_backward(dy.contiguous(), pre)
        dx = dpre * w[:, :, head]
        dw = w.new_empty(w.shape)  # (K, 1, taps, C)
        for k in range(taps):
            shift = head - k
            if shift >= L:
                dw[:, 0, k] = 0
                continue
            if k != head:
                dx[:, :, :L - shift].addcmul_(dpre[:, :, shift:], w[:, :, k])
            dw[:, 0, k] = (dpre[:, :, shift:] * x[:, :, :L - shift]).sum((0, 2))
        db = dpre.sum((0, 2)) if ctx.has_bias else None
        return dx, dw, db


def causal_depthwise_conv1d_channels_last(x: torch.Tensor, weight: torch.Tensor,
                                          bias: Optional[torch.Tensor], silu: bool = False) -> torch.Tensor:
    """:func:`causal_depthwise_conv1d` on channels-last sequences: x (B, K, L, C), weight (K, C, taps),
    bias (K, C) or None -> (B, K, L, C); each multiply-add runs over contiguous channel rows, with no
    padded copy. ``silu=True`` applies SiLU, fused with the conv in one autograd node."""
    batch, K, L, C = x.shape
    taps = weight.shape[-1]
    record_flops("causal_conv1d", batch * K * C * L * taps)
    w = weight.to(x.dtype).permute(0, 2, 1).unsqueeze(1)  # (K, 1, taps, C)
    b = None if bias is None else bias.to(x.dtype)
    if not silu:
        return _causal_conv_no_pad(x, w, b)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return _CausalConvSiLU.apply(x, w, b)
    return torch.nn.functional.silu(_causal_conv_no_pad(x, w, b))
