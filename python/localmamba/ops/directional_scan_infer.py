"""directional_scan_channels_last: the forward-only (inference) directional scan on channels-last rows.

The same values as :func:`localmamba.ops.directional_selective_scan` with ``layout="BLC"`` (its
reference is ``localmamba.ops.reference.directional_selective_scan``), for inputs laid out as
the mixers produce them, channel axis last: LocalVMamba's u is the (B, T, D) token tensor after
the conv, dt / B / C are views of one (B, T, K, R + 2N) projection; LocalVim's u, dt, B, C are
(B, K, L, .) in sequence order and its z is read straight from the in_proj output (B, T, D)
through the index table. Nothing is transposed or gathered first, and the CPU kernel vectorises
across channels (see cpp/include/localmamba/directional_scan_infer.h).

No backward: it runs only where no gradient is wanted (``torch.no_grad`` / ``inference_mode``
or inputs that do not require grad); the mixers keep the differentiable op beside it.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from . import _native

__all__ = ["directional_scan_channels_last", "channels_last_scan_supported"]


def _err(msg: str) -> str:
    return f"directional_scan_channels_last: {msg}"


def channels_last_scan_supported(*tensors: Optional[torch.Tensor]) -> bool:
    """True when the channels-last kernel can run these tensors: CPU, one dtype of float32 /
    float64, and no gradient wanted."""
    ts = [t for t in tensors if t is not None]
    if not ts or ts[0].dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != ts[0].dtype for t in ts):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in ts))


def _rows(t: Optional[torch.Tensor], shared: bool):
    """A 4-D row set with its (batch, direction, step, inner) strides; a 3-D (B, S, inner) tensor is
    shared by the directions (direction stride 0)."""
    if t is None:
        return None
    s = list(t.stride())
    return _native.tensor_arg(t, [s[0], 0, s[1], s[2]] if shared else s)


def infer_params(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens: int,
                 delta_softplus: bool, sequence_inputs: bool, out: torch.Tensor):
    """(params, keep): the native DirectionalScanInferParams of one call (also the backward's
    forward params, ops/directional_scan_train.py) and the (K*D, R) dt weight it points to, to keep
    alive with the inputs while the params are used."""
    from .. import _C

    K, length = index.shape
    batch, dim = u.shape[0], u.shape[-1]
    rank = delta.shape[-1] if dt_weight is not None else 0
    w2 = None if dt_weight is None else dt_weight.reshape(K * dim, rank)
    arg = _native.tensor_arg
    params = _C.DirectionalScanInferParams(
        dtype=_native.dtype_name(u.dtype), batch=batch, num_directions=K, dim=dim, length=length,
        num_tokens=num_tokens, dstate=A.shape[1], dt_rank=rank, delta_softplus=delta_softplus, index=index.data_ptr(),
        u=_rows(u, u.dim() == 3), delta=None if dt_weight is not None else _rows(delta, False),
        dt=_rows(delta, False) if dt_weight is not None else None, B=_rows(B, False), C=_rows(C, False),
        z=None if z is None else _rows(z, z.dim() == 3), u_by_token=not sequence_inputs,
        delta_by_token=not sequence_inputs, dt_by_token=not sequence_inputs, B_by_token=not sequence_inputs,
        C_by_token=not sequence_inputs, z_by_token=z is not None and (z.dim() == 3 or not sequence_inputs),
        dt_weight=arg(w2), A=arg(A),
        D=arg(D), delta_bias=arg(delta_bias), weights=arg(weights), out=arg(out),
    )
    return params, w2


@torch.library.custom_op("localmamba::directional_scan_infer", mutates_args=())
def _infer_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    dt_weight: Optional[torch.Tensor],
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    weights: Optional[torch.Tensor],
    index: torch.Tensor,
    num_tokens: int,
    delta_softplus: bool,
    sequence_inputs: bool,
) -> torch.Tensor:
    from .. import _C

    K = index.shape[0]
    batch, dim = u.shape[0], u.shape[-1]
    out = u.new_empty(batch, K, num_tokens, dim)
    if batch == 0 or dim == 0:
        return out
    params, _keep = infer_params(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens,
                                 delta_softplus, sequence_inputs, out)
    _C.directional_scan_infer(params)
    return out


@_infer_op.register_fake
def _(u, delta, dt_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens, delta_softplus, sequence_inputs):
    return u.new_empty(u.shape[0], index.shape[0], num_tokens, u.shape[-1])


def _unit_inner(name: str, t: Optional[torch.Tensor], dims: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    if t is None:
        return None
    if not isinstance(t, torch.Tensor) or t.dim() != dims:
        got = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(_err(f"{name} must be a {dims}-D tensor, got {got}"))
    if t.dtype != dtype:
        raise ValueError(_err(f"{name} must be {dtype} like u, got {t.dtype}"))
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def directional_scan_channels_last(
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
    weights: Optional[torch.Tensor] = None,
    delta_softplus: bool = True,
    sequence_inputs: bool = False,
) -> torch.Tensor:
    """K directional selective scans, forward only, channels last. Returns y (B, K, num_tokens, D).

    index: (K, L) int64 token visited at each step (-1 = padding), on the CPU.
    Token order (``sequence_inputs=False``, LocalVMamba): u (B, T, D) shared by the directions;
    delta (B, K, T, D) or, with dt_proj_weight (K, D, R), dt (B, K, T, R); B, C (B, K, T, N).
    Sequence order (LocalVim): u (B, K, L, D), delta / dt and B, C with L steps.
    z: (B, T, D) read through the index (shared by the directions), or (B, K, S, D) like u.
    A: (K*D, N); D, delta_bias: (K*D,); weights: (K,). Any strides along the leading axes; the
    last axis is made contiguous when it is not.
    """
    if not isinstance(u, torch.Tensor) or u.dim() not in (3, 4):
        raise ValueError(_err(f"u must be (B, T, D) or (B, K, L, D), got {getattr(u, 'shape', type(u).__name__)}"))
    if not channels_last_scan_supported(u, delta, A, B, C, D, z, delta_bias, weights, dt_proj_weight):
        raise ValueError(_err("needs CPU float32 / float64 tensors of one dtype and no gradient "
                              "(use localmamba.ops.directional_selective_scan for training)"))
    u, delta, B, C, z, index = checked_channels_last_args(u, delta, A, B, C, index, num_tokens, dt_proj_weight, D, z,
                                                          delta_bias, weights, sequence_inputs)
    return _infer_op(u, delta, dt_proj_weight, A, B, C, D, z, delta_bias, weights, index, num_tokens,
                     delta_softplus, sequence_inputs)


def checked_channels_last_args(u, delta, A, B, C, index, num_tokens, dt_proj_weight, D, z, delta_bias, weights,
                               sequence_inputs):
    """Shapes, dtypes and the index of a channels-last scan call (see directional_scan_channels_last);
    returns u, delta, B, C, z with a unit last stride and the index contiguous."""
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2 or index.is_cuda:
        raise ValueError(_err("index must be a CPU int64 tensor (K, L)"))
    if sequence_inputs == (u.dim() == 3):
        raise ValueError(_err("u must be (B, K, L, D) with sequence_inputs=True and (B, T, D) without"))
    dtype = u.dtype
    K, length = index.shape
    batch, dim = u.shape[0], u.shape[-1]
    steps = length if sequence_inputs else num_tokens
    u = _unit_inner("u", u, u.dim(), dtype)
    delta, B, C = (_unit_inner(n, t, 4, dtype) for n, t in (("delta", delta), ("B", B), ("C", C)))
    z = _unit_inner("z", z, z.dim() if z is not None else 0, dtype)
    rank = dt_proj_weight.shape[-1] if dt_proj_weight is not None else dim
    expect = {"delta": (delta, (batch, K, steps, rank)), "B": (B, (batch, K, steps, A.shape[-1])),
              "C": (C, (batch, K, steps, A.shape[-1])), "A": (A, (K * dim, A.shape[-1]))}
    if sequence_inputs:
        expect["u"] = (u, (batch, K, length, dim))
    elif u.shape[1] != num_tokens:
        raise ValueError(_err(f"u must have num_tokens={num_tokens} rows, got {u.shape[1]}"))
    if z is not None:
        expect["z"] = (z, (batch, num_tokens, dim) if z.dim() == 3 else (batch, K, steps, dim))
    if dt_proj_weight is not None:
        expect["dt_proj_weight"] = (dt_proj_weight, (K, dim, rank))
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None:
            expect[name] = (vec, (K * dim,))
    if weights is not None:
        expect["weights"] = (weights, (K,))
    bad: List[str] = [f"{n} must have shape {s}, got {tuple(t.shape)}" for n, (t, s) in expect.items()
                      if tuple(t.shape) != tuple(s)]
    if bad:
        raise ValueError(_err("; ".join(bad)))
    return u, delta, B, C, z, index.contiguous()
