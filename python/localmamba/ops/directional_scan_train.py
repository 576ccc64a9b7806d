"""directional_scan_channels_last_train: the channels-last directional scan with a backward (CPU training).

The same values as :func:`localmamba.ops.directional_scan_channels_last` (whose forward kernel it
runs, unchanged) and a native backward written for the same layouts (C++
``directional_scan_train_bwd_cpu``, cpp/include/localmamba/directional_scan_train.h): SIMD lanes are
channels, so the adjoint recurrence runs on whole vectors with no horizontal sum per step, where the
differentiable ``directional_selective_scan`` vectorises over the N states. Nothing is saved by the
forward beyond its inputs: the backward re-runs the recurrence of its channels.

With ``dt_proj_weight`` the kernel returns the gradient of the projected delta (B, K, S, D); the
gradients of the low-rank dt and of the weight are then two GEMMs here. Gradients of a u or z shared
by the directions (direction stride 0, e.g. LocalVim's z read from in_proj's output through the
index) come back per direction and are summed here in direction order. The split into work units and
every reduction have a fixed order: results do not depend on the thread count.

The reference is ``localmamba.ops.reference.directional_selective_scan`` (tests compare the gradients
in float64 and run gradcheck).
"""
from __future__ import annotations

from typing import Optional

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


def _grad_rows(t: torch.Tensor, by_token: bool):
    return _native.tensor_arg(t, list(t.stride())), by_token


def _sum_directions(per_direction: torch.Tensor) -> torch.Tensor:
    """(B, K, S, D) -> (B, S, D), adding the directions in order (fixed rounding)."""
    total = per_direction[:, 0].clone()
    for k in range(1, per_direction.shape[1]):
        total += per_direction[:, k]
    return total


def _backward_kernel(u, delta, dt_weight, A, B, C, D, z, delta_bias, index, num_tokens, delta_softplus,
                     sequence_inputs, dout):
    """Runs the native backward; returns du, ddelta (of the pre-activation delta), dB, dC, dz, dA, dD, dbias
    with shared u / z gradients still per direction."""
    from .. import _C

    K, length = index.shape
    batch, dim, N = u.shape[0], u.shape[-1], A.shape[1]
    steps = length if sequence_inputs else num_tokens
    new = u.new_empty
    du = new(batch, K, steps, dim)
    ddelta = new(batch, K, steps, dim)
    dB, dC = new(batch, K, steps, N), new(batch, K, steps, N)
    dz = None if z is None else new(batch, K, num_tokens if z.dim() == 3 else steps, dim)
    dA = torch.empty_like(A)
    dD = None if D is None else torch.empty_like(D)
    dbias = None if delta_bias is None else torch.empty_like(delta_bias)
    grads = (du, ddelta, dB, dC, dz, dA, dD, dbias)
    if batch == 0 or dim == 0:
        return tuple(None if g is None else g.zero_() for g in grads)
    params, _keep = infer_params(u, delta, dt_weight, A, B, C, D, z, delta_bias, None, index, num_tokens,
                                 delta_softplus, sequence_inputs, dout)
    workspace = torch.empty(_C.directional_scan_train_workspace_bytes(params), dtype=torch.uint8)
    arg = _native.tensor_arg
    fields = dict(dout=_native.tensor_arg(dout, list(dout.stride())), dA=arg(dA), dD=arg(dD), ddelta_bias=arg(dbias),
                  workspace=workspace.data_ptr(), workspace_bytes=workspace.numel())
    for name, t, by_token in (("du", du, not sequence_inputs), ("ddelta", ddelta, not sequence_inputs),
                              ("dB", dB, not sequence_inputs), ("dC", dC, not sequence_inputs),
                              ("dz", dz, z is not None and (z.dim() == 3 or not sequence_inputs))):
        if t is not None:
            fields[name] = _native.tensor_arg(t, list(t.stride()))
            fields[f"{name}_by_token"] = by_token
    _C.directional_scan_train_bwd(params, _C.DirectionalScanTrainGrads(**fields))
    return grads


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
        du, ddelta, dB, dC, dz, dA, dD, dbias = _backward_kernel(
            u, delta, dt_weight, A, B, C, D, z, delta_bias, index, num_tokens, delta_softplus, sequence_inputs,
            dout.contiguous())
        if u.dim() == 3:
            du = _sum_directions(du)
        if dz is not None and z.dim() == 3:
            dz = _sum_directions(dz)
        ddt = ddt_weight = None
        if dt_weight is not None:  # delta = dt @ dt_weight[k]^T per direction
            ddt = torch.matmul(ddelta, dt_weight) if ctx.needs_input_grad[1] else None
            if ctx.needs_input_grad[2]:
                ddt_weight = torch.matmul(ddelta.transpose(2, 3), delta).sum(0) if ddelta.shape[0] > 1 else \
                    torch.matmul(ddelta[0].transpose(1, 2), delta[0])
            ddelta = ddt
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
