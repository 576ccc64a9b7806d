"""scan_conv_channels_last_train: LocalVim's causal depthwise conv1d (+ bias, SiLU) along every scan
direction, read straight through the index, with a backward (CPU training).

The forward is the inference kernel ``scan_conv_infer`` (ops/mixer_infer.py, unchanged): no gathered
copy of the tokens. The backward is the native ``scan_conv_train_bwd``
(cpp/include/localmamba/scan_conv_train.h), one pass per (batch, channel segment): it recomputes
pre = bias + conv per step (cheaper than saving it: the forward would write a second (B, K, L, D)
tensor and the backward read it), adds each step's share of dx straight into the token's row
(directions in order, then steps), and sums dweight / dbias from per-(batch, direction) partials in a
fixed order, so results do not depend on the thread count.

Values: the conv + bias equals ``nn.scan._causal_conv_no_pad`` bit for bit where both fuse each
multiply-add into one FMA (kernels at AVX2 / AVX-512 and torch's vectorised addcmul; same order); the
SiLU uses the kernels' own exp, so u differs from ``torch.nn.functional.silu`` by about one rounding in
a few elements (digits shape: 0.4 % of them, at most 4.8e-7). Gradients differ from autograd through the
old path by summation order.

Supported: CPU tensors of one dtype, float32 or float64 (``scan_conv_train_supported``); the CUDA path
keeps the differentiable composition. The reference is
:func:`localmamba.ops.mixer_infer.scan_conv_channels_last_reference` (gather, pad, shifted multiply-adds;
differentiable by autograd), re-exported here.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from . import _native
from .directional_scan_train import channels_last_train_supported as scan_conv_train_supported
from .mixer_infer import scan_conv_channels_last_reference
from .scan_table import tracing

__all__ = ["scan_conv_channels_last_train", "scan_conv_channels_last_reference", "scan_conv_train_supported"]

_OP = "scan_conv_channels_last_train"
_MAX_TAPS = 16  # kScanConvMaxTaps (mixer_infer.h)


def _fail(message: str) -> None:
    raise ValueError(f"{_OP}: {message}")


def _params(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], silu: bool,
            out: Optional[torch.Tensor]):
    from .. import _C

    K, length = index.shape
    batch, tokens, dim = x.shape[0], x.shape[1], weight.shape[2]  # x may have more channels (x_prefix)
    arg = _native.tensor_arg
    return _C.ScanConvInferParams(
        dtype=_native.dtype_name(x.dtype), batch=batch, num_directions=K, dim=dim, length=length, num_tokens=tokens,
        taps=weight.shape[1], silu=silu, index=index.data_ptr(), x=arg(x), weight=arg(weight), bias=arg(bias),
        out=arg(out))


def _new_out(x: torch.Tensor, index: torch.Tensor, dim: int, direction_major: bool) -> torch.Tensor:
    K, length = index.shape
    batch = x.shape[0]
    if direction_major:
        return x.new_empty(K, batch, length, dim).transpose(0, 1)
    return x.new_empty(batch, K, length, dim)


@torch.library.custom_op("localmamba::scan_conv_train", mutates_args=())
def _fwd_op(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], silu: bool,
            direction_major: bool) -> torch.Tensor:
    from .. import _C

    out = _new_out(x, index, weight.shape[2], direction_major)
    if out.numel():
        _C.scan_conv_infer(_params(x, index, weight, bias, silu, out))
    return out


@_fwd_op.register_fake
def _(x, index, weight, bias, silu, direction_major):
    return _new_out(x, index, weight.shape[2], direction_major)


def _grad_tensors(x, weight, bias):
    """dx (B, T, C) like x, dweight (K, taps, D), dbias (K, D) or an empty tensor without a bias."""
    return [x.new_empty(x.shape), x.new_empty(weight.shape), x.new_empty(bias.shape if bias is not None else (0,))]


@torch.library.custom_op("localmamba::scan_conv_train_bwd", mutates_args=())
def _bwd_op(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], silu: bool,
            dout: torch.Tensor) -> List[torch.Tensor]:
    """[dx, dweight, dbias (empty without a bias)]."""
    from .. import _C

    dx, dweight, dbias = _grad_tensors(x, weight, bias)
    if weight.shape[2] == 0:
        return [dx.zero_(), dweight, dbias]
    params = _params(x, index, weight, bias, silu, None)
    workspace = torch.empty(_C.scan_conv_train_workspace_bytes(params), dtype=torch.uint8)
    arg = _native.tensor_arg
    _C.scan_conv_train_bwd(params, _C.ScanConvTrainGrads(
        dout=arg(dout), dx=arg(dx), dx_channels=x.shape[2], dweight=arg(dweight), dbias=arg(dbias) if bias is not None else None,
        workspace=workspace.data_ptr(), workspace_bytes=workspace.numel()))
    return [dx, dweight, dbias]


@_bwd_op.register_fake
def _(x, index, weight, bias, silu, dout):
    return _grad_tensors(x, weight, bias)


def _setup_context(ctx, inputs, output):
    x, index, weight, bias, silu, _ = inputs
    ctx.save_for_backward(x, index, weight, bias)
    ctx.silu = silu


def _backward(ctx, dout):
    x, index, weight, bias = ctx.saved_tensors
    dx, dweight, dbias = _bwd_op(x, index, weight, bias, ctx.silu, _native.unit_last(dout))
    return dx, None, dweight, dbias if bias is not None else None, None, None


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def _check_index(index: torch.Tensor, num_tokens: int) -> None:
    if not (isinstance(index, torch.Tensor) and index.dtype == torch.int64 and index.dim() == 2
            and index.device.type == "cpu" and index.shape[0] >= 1 and index.shape[1] >= 1):
        _fail(f"index must be a CPU int64 tensor (K, L) with K, L >= 1, got "
              f"{getattr(index, 'dtype', type(index).__name__)} {tuple(getattr(index, 'shape', ()))}")
    # Values are data: not read while tracing (the native forward checks them again on every call).
    if not tracing() and (int(index.min()) < -1 or int(index.max()) >= num_tokens):
        _fail(f"index values must be in [-1, {num_tokens}) (x has {num_tokens} tokens), got "
              f"[{int(index.min())}, {int(index.max())}]")


def scan_conv_channels_last_train(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                                  bias: Optional[torch.Tensor] = None, silu: bool = True,
                                  out_direction_major: bool = True, x_prefix: bool = False) -> torch.Tensor:
    """u[b, k, t] = silu(bias[k] + sum_j weight[k, j] * x[b, index[k, t - taps + 1 + j]]) -> (B, K, L, D),
    differentiable in x, weight and bias.

    x: (B, T, D) token rows, channels contiguous (any other strides: e.g. ``xz[..., :D]`` of in_proj's
    (B, T, 2D) output, read in place); index: (K, L) CPU int64, -1 = padding step (reads zeros, as do
    steps before the start; a token may be read by any number of steps); weight: (K, taps, D),
    1 <= taps <= 16; bias: (K, D) or None. With ``out_direction_major`` the result is a (B, K, L, D)
    view of (K, B, L, D) memory (each direction's steps one matrix for the next projection), else
    contiguous (B, K, L, D). CPU, float32 / float64, one dtype (``scan_conv_train_supported``).

    ``x_prefix=True``: x is (B, T, C) with C >= D and the conv reads its first D channels; x's gradient
    is (B, T, C) with zeros past D, written by the kernel. Pass in_proj's whole output xz (C = 2D):
    autograd then adds this gradient to the z half's instead of zero-filling and copying a slice's.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        _fail(f"x must be (B, T, D), got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, torch.Tensor):
            _fail(f"{name} must be a tensor, got {type(t).__name__}")
    if not scan_conv_train_supported(x, weight, bias):
        _fail("x, weight and bias must be CPU tensors of one dtype, float32 or float64; got "
              + ", ".join(f"{t.dtype} on {t.device}" for t in (x, weight, bias) if t is not None))
    B, T, C = x.shape
    D = weight.shape[2] if x_prefix and weight.dim() == 3 else C
    if D > C:
        _fail(f"x_prefix: x has {C} channels, fewer than weight's D = {D}")
    if T < 1:
        _fail("x needs at least one token")
    _check_index(index, T)
    K = index.shape[0]
    if weight.dim() != 3 or weight.shape[0] != K or weight.shape[2] != D:
        _fail(f"weight must be (K, taps, D) = ({K}, taps, {D}), got {tuple(weight.shape)}")
    if not 1 <= weight.shape[1] <= _MAX_TAPS:
        _fail(f"taps (weight.shape[1]) must be in [1, {_MAX_TAPS}], got {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (K, D):
        _fail(f"bias must be (K, D) = ({K}, {D}), got {tuple(bias.shape)}")
    unit = _native.unit_last
    return _fwd_op(unit(x), index.contiguous(), unit(weight), unit(bias), bool(silu), bool(out_direction_major))
