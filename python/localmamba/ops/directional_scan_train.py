"""directional_scan_channels_last_train: the channels-last directional scan with a backward (CPU training).

The same values as :func:`localmamba.ops.directional_scan_channels_last` (whose forward kernel it
runs, unchanged) and a native backward written for the same layouts (C++
``directional_scan_train_bwd_cpu``, cpp/include/localmamba/directional_scan_train.h): SIMD lanes are
channels, so the adjoint recurrence runs on whole vectors with no horizontal sum per step, where the
differentiable ``directional_selective_scan`` vectorises over the N states. Nothing is saved by the
forward beyond its inputs: the backward re-runs the recurrence of its channels.

With ``dt_proj_weight`` the kernel returns the gradients of the low-rank dt (B, K, S, R) and of the
weight (K, D, R) directly (the projected delta's (B, K, S, D) gradient is never formed; the weight's
is summed over the batch in a fixed order). Gradients of a u or z shared
by the directions (direction stride 0, e.g. LocalVim's z read from in_proj's output through the
index) come back per direction and are summed here in direction order. The split into work units and
every reduction have a fixed order: results do not depend on the thread count.

The reference is ``localmamba.ops.reference.directional_selective_scan`` (tests compare the gradients
in float64 and run gradcheck).
"""
from __future__ import annotations

from typing import List, Optional

import torch

from . import _native
from .directional_scan_infer import _err, _infer_op, checked_channels_last_args, infer_params

__all__ = ["directional_scan_channels_last_train", "channels_last_train_supported"]


def channels_last_train_supported(*tensors: Optional[torch.Tensor]) -> bool:
    """True when the channels-last scan with a backward can run these tensors: CPU, one dtype of
    float32 / float64."""
    ts = [t for t in tensors if t is not None]
    return bool(ts) and ts[0].dtype in (torch.float32, torch.float64) and all(
        t.device.type == "cpu" and t.dtype == ts[0].dtype for t in ts)


def _sum_directions(per_direction: torch.Tensor) -> torch.Tensor:
    """(B, K, S, D) -> (B, S, D), adding the directions in order (fixed rounding)."""
    total = per_direction[:, 0].clone()
    for k in range(1, per_direction.shape[1]):
        total += per_direction[:, k]
    return total


def _grad_shapes(u, delta, dt_weight, z, A, index, num_tokens: int, sequence_inputs: bool):
    """Shapes of du, ddelta (ddt with a dt weight), dB, dC, dz (per direction for a shared u / z)."""
    K, length = index.shape
    batch, dim, N = u.shape[0], u.shape[-1], A.shape[1]
    steps = length if sequence_inputs else num_tokens
    zs = None if z is None else (batch, K, num_tokens if z.dim() == 3 else steps, dim)
    dd = (batch, K, steps, delta.shape[-1] if dt_weight is not None else dim)
    return (batch, K, steps, dim), dd, (batch, K, steps, N), (batch, K, steps, N), zs


@torch.library.custom_op("localmamba::directional_scan_train_bwd", mutates_args=())
def _bwd_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    dt_weight: Optional[torch.Tensor],
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    index: torch.Tensor,
    num_tokens: int,
    delta_softplus: bool,
    sequence_inputs: bool,
    dout: torch.Tensor,
) -> List[torch.Tensor]:
    """[du, ddelta (of the pre-activation delta; with dt_weight: ddt, of the low-rank dt), ddt_weight
    (empty without dt_weight), dB, dC, dz, dA, dD, ddelta_bias]; shared u / z gradients per
    direction; absent ones empty."""
    from .. import _C

    shapes = _grad_shapes(u, delta, dt_weight, z, A, index, num_tokens, sequence_inputs)
    du, ddelta, dB, dC = (u.new_empty(s) for s in shapes[:4])
    dz = u.new_empty(shapes[4]) if shapes[4] else u.new_empty(0)
    dw = torch.empty_like(dt_weight, memory_format=torch.contiguous_format) if dt_weight is not None \
        else u.new_empty(0)
    dA = torch.empty_like(A)
    dD = torch.empty_like(D) if D is not None else u.new_empty(0)
    dbias = torch.empty_like(delta_bias) if delta_bias is not None else u.new_empty(0)
    grads = [du, ddelta, dw, dB, dC, dz, dA, dD, dbias]
    if u.shape[0] == 0 or u.shape[-1] == 0:
        return [g.zero_() for g in grads]
    # the forward's params (dout stands in for the unused output pointer)
    params, _keep = infer_params(u, delta, dt_weight, A, B, C, D, z, delta_bias, None, index, num_tokens,
                                 delta_softplus, sequence_inputs, dout)
    workspace = torch.empty(_C.directional_scan_train_workspace_bytes(params), dtype=torch.uint8)
    arg = _native.tensor_arg
    fields = dict(dout=arg(dout, list(dout.stride())), dA=arg(dA), dD=arg(dD) if D is not None else None,
                  ddelta_bias=arg(dbias) if delta_bias is not None else None,
                  ddt_weight=arg(dw.view(-1, dw.shape[-1])) if dt_weight is not None else None,
                  workspace=workspace.data_ptr(),
                  workspace_bytes=workspace.numel())
    for name, t, by_token in (("du", du, not sequence_inputs),
                              ("ddt" if dt_weight is not None else "ddelta", ddelta, not sequence_inputs),
                              ("dB", dB, not sequence_inputs), ("dC", dC, not sequence_inputs),
                              ("dz", dz if z is not None else None, z is not None and (z.dim() == 3 or not sequence_inputs))):
        if t is not None:
            fields[name] = arg(t, list(t.stride()))
            fields[f"{name}_by_token"] = by_token
    _C.directional_scan_train_bwd(params, _C.DirectionalScanTrainGrads(**fields))
    return grads


@_bwd_op.register_fake
def _(u, delta, dt_weight, A, B, C, D, z, delta_bias, index, num_tokens, delta_softplus, sequence_inputs, dout):
    du, ddelta, dB, dC, dz = _grad_shapes(u, delta, dt_weight, z, A, index, num_tokens, sequence_inputs)
    return [u.new_empty(du), u.new_empty(ddelta),
            torch.empty_like(dt_weight) if dt_weight is not None else u.new_empty(0), u.new_empty(dB), u.new_empty(dC),
            u.new_empty(dz) if dz else u.new_empty(0), torch.empty_like(A),
            torch.empty_like(D) if D is not None else u.new_empty(0),
            torch.empty_like(delta_bias) if delta_bias is not None else u.new_empty(0)]


class _ChannelsLastScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, dt_weight, A, B, C, D, z, delta_bias, index, num_tokens, delta_softplus,
                sequence_inputs):
        ctx.save_for_backward(u, delta, dt_weight, A, B, C, D, z, delta_bias, index)
        ctx.flags = (num_tokens, delta_softplus, sequence_inputs)
        return _infer_op(u, delta, dt_weight, A, B, C, D, z, delta_bias, None, index, num_tokens, delta_softplus,
                         sequence_inputs)

    @staticmethod
    def backward(ctx, dout):
        u, delta, dt_weight, A, B, C, D, z, delta_bias, index = ctx.saved_tensors
        num_tokens, delta_softplus, sequence_inputs = ctx.flags
        du, ddelta, ddt_weight, dB, dC, dz, dA, dD, dbias = _bwd_op(
            u, delta, dt_weight, A, B, C, D, z, delta_bias, index, num_tokens, delta_softplus, sequence_inputs,
            dout.contiguous())
        dz = dz if z is not None else None
        dD = dD if D is not None else None
        dbias = dbias if delta_bias is not None else None
        if u.dim() == 3:
            du = _sum_directions(du)
        if dz is not None and z.dim() == 3:
            dz = _sum_directions(dz)
        ddt_weight = ddt_weight if dt_weight is not None else None  # ddelta is then ddt, the low-rank dt's
        return (du, ddelta, ddt_weight, dA, dB, dC, dD, dz, dbias, None, None, None, None)


def directional_scan_channels_last_train(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    num_tokens: int,
    *,
    dt_proj_weight: Optional[torch.Tensor] = None,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = True,
    sequence_inputs: bool = False,
) -> torch.Tensor:
    """:func:`localmamba.ops.directional_scan_channels_last` (same arguments and layouts, no
    ``weights``) with a backward: gradients for u, delta / dt, dt_proj_weight, A, B, C, D, z and
    delta_bias. CPU, float32 / float64. Returns y (B, K, num_tokens, D)."""
    if not isinstance(u, torch.Tensor) or u.dim() not in (3, 4):
        raise ValueError(_err(f"u must be (B, T, D) or (B, K, L, D), got {getattr(u, 'shape', type(u).__name__)}"))
    if not channels_last_train_supported(u, delta, A, B, C, D, z, delta_bias, dt_proj_weight):
        raise ValueError(_err("needs CPU float32 / float64 tensors of one dtype"))
    u, delta, B, C, z, index = checked_channels_last_args(u, delta, A, B, C, index, num_tokens, dt_proj_weight, D, z,
                                                          delta_bias, None, sequence_inputs)
    return _ChannelsLastScan.apply(u, delta, dt_proj_weight, A, B, C, D, z, delta_bias, index, num_tokens,
                                   delta_softplus, sequence_inputs)
