"""gated_sum_channels_last_train: SCAttn's gated sum over the directions with a native backward (CPU training).

Both mixers end their K directional scans with SCAttn's channel gate and a sum over the directions:
``out = sum_k y_k * s_k`` with ``s = sigmoid(W2 gelu(W1 mean_t LayerNorm(y_k) + b1) + b2)``. Through
autograd that is a LayerNorm over every (B, K, T, C) row, a token mean, a broadcast product and a sum,
and as many passes again backwards. Here the forward is two native passes (``gate_stats_infer``:
the token mean of the un-affine LayerNorm; ``gated_merge_infer``: the gated sum; ops/mixer_infer.py)
around the small gate MLP, and the backward two native passes (C++ ``gate_grad`` and
``gated_sum_bwd_y``, cpp/include/localmamba/gated_sum_train.h) around the MLP's backward. Nothing of
size (B, K, T, C) is saved besides y: the backward recomputes each row's mean and rstd as the forward
computed them. Results are bit-identical for any thread count.

Supported: CPU tensors of one dtype, float32 or float64 (``gated_sum_train_supported``). The reference
is :func:`gated_sum_reference` (the module path, differentiable by autograd).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _native
from .directional_scan_train import channels_last_train_supported as gated_sum_train_supported
from .mixer_infer import _gate_stats_op, _gated_merge_op

__all__ = ["gated_sum_channels_last_train", "gated_sum_reference", "gated_sum_train_supported", "gate_mlp_backward"]


def _params(y: torch.Tensor, dout: torch.Tensor, out: torch.Tensor, eps: float = 0.0, gate=None, token_grad=None):
    from .. import _C

    batch, K, tokens, dim = y.shape
    arg = _native.tensor_arg
    return _C.GatedSumTrainParams(
        dtype=_native.dtype_name(y.dtype), batch=batch, num_directions=K, dim=dim, num_tokens=tokens, eps=eps,
        y=arg(y), dout=arg(dout), gate=arg(gate), token_grad=arg(token_grad), out=arg(out))


@torch.library.custom_op("localmamba::gate_grad", mutates_args=())
def _gate_grad_op(y: torch.Tensor, dout: torch.Tensor) -> torch.Tensor:
    """ds[b, k, c] = sum_t dout[b, t, c] y[b, k, t, c]."""
    from .. import _C

    batch, K, _, dim = y.shape
    ds = y.new_empty(batch, K, dim)
    if batch == 0 or dim == 0:
        return ds
    params = _params(y, dout, ds.unsqueeze(2))  # (B, K, 1, C): the rows' token stride is unused
    workspace = y.new_empty(_C.gated_sum_train_workspace_elements(params))
    params.workspace, params.workspace_elements = workspace.data_ptr(), workspace.numel()
    _C.gate_grad(params)
    return ds


@_gate_grad_op.register_fake
def _(y, dout):
    return y.new_empty(y.shape[0], y.shape[1], y.shape[3])


@torch.library.custom_op("localmamba::gated_sum_bwd_y", mutates_args=())
def _bwd_y_op(y: torch.Tensor, dout: torch.Tensor, gate: torch.Tensor, token_grad: torch.Tensor,
              eps: float) -> torch.Tensor:
    """dy of the gated sum: dout * gate + the backward of the LayerNorm token mean (token_grad = its
    gradient / T, per (b, k, c))."""
    from .. import _C

    dy = torch.empty_like(y, memory_format=torch.contiguous_format)
    if y.numel() == 0:
        return dy
    _C.gated_sum_bwd_y(_params(y, dout, dy, eps, gate, token_grad))
    return dy


@_bwd_y_op.register_fake
def _(y, dout, gate, token_grad, eps):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def gate_mlp_backward(g, w1, b1, w2, s, grad_s):
    """Gradients of s = sigmoid(W2 gelu(W1 g + b1) + b2) (exact GELU) written out, for g, s, grad_s of
    shape (..., C): (grad_g, dW1, db1, dW2, db2). No autograd call inside a backward, so
    torch.compile keeps the layer in one graph."""
    a1 = F.linear(g, w1, b1)
    h = F.gelu(a1)
    d_a2 = grad_s * s * (1 - s)
    dh = d_a2 @ w2
    cdf = 0.5 * (1 + torch.erf(a1 * 0.7071067811865476))
    pdf = torch.exp(-0.5 * a1 * a1) * 0.3989422804014327
    d_a1 = dh * (cdf + a1 * pdf)  # exact GELU derivative
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    dw2 = flat(d_a2).t() @ flat(h)
    dw1 = flat(d_a1).t() @ flat(g)
    return d_a1 @ w1, dw1, flat(d_a1).sum(0), dw2, flat(d_a2).sum(0)


class _GatedSumTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, ln_w, ln_b, w1, b1, w2, b2, eps: float):
        mean_xhat = _gate_stats_op(y, eps)  # (B, K, C)
        g = torch.addcmul(ln_b, mean_xhat, ln_w)  # mean_t LayerNorm(y): the affine commutes with the mean
        s = torch.sigmoid(F.linear(F.gelu(F.linear(g, w1, b1)), w2, b2))
        ctx.save_for_backward(y, ln_w, w1, b1, w2, mean_xhat, g, s)
        ctx.eps = eps
        return _gated_merge_op(y, s, None, None, 0.0, None, False)

    @staticmethod
    def backward(ctx, dout):
        y, ln_w, w1, b1, w2, mean_xhat, g, s = ctx.saved_tensors
        dout = _native.unit_last(dout)
        ds = _gate_grad_op(y, dout)
        grad_g, dw1, db1, dw2, db2 = gate_mlp_backward(g, w1, b1, w2, s, ds)
        flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
        dln_w = flat(grad_g * mean_xhat).sum(0)
        dln_b = flat(grad_g).sum(0)
        token_grad = grad_g * (ln_w / y.shape[2])
        dy = _bwd_y_op(y, dout, s, token_grad, ctx.eps)
        return dy, dln_w, dln_b, dw1, db1, dw2, db2, None


def _err(message: str) -> ValueError:
    return ValueError(f"gated_sum_channels_last_train: {message}")


def gated_sum_channels_last_train(y: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                                  reduce_weight: torch.Tensor, reduce_bias: torch.Tensor,
                                  select_weight: torch.Tensor, select_bias: torch.Tensor,
                                  eps: float = 1e-5) -> torch.Tensor:
    """sum_k y_k * sigmoid(select(gelu(reduce(mean_t LayerNorm(y_k))))) -> (B, T, C), differentiable in y
    and every parameter: SCAttn (nn.layers.SCAttn, exact GELU, sigmoid) followed by the sum over the
    directions. y: (B, K, T, C), channels contiguous; the LayerNorm's weight / bias (C,), the reduce
    Linear (R, C) / (R,), the select Linear (C, R) / (C,). CPU, float32 / float64, one dtype."""
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        raise _err(f"y must be (B, K, T, C), got {tuple(getattr(y, 'shape', ())) or type(y).__name__}")
    B, K, T, C = y.shape
    if T < 1:
        raise _err("y needs at least one token")
    params = (norm_weight, norm_bias, reduce_weight, reduce_bias, select_weight, select_bias)
    if not all(isinstance(t, torch.Tensor) for t in params):
        raise _err("every gate parameter must be a tensor")
    R = reduce_weight.shape[0] if reduce_weight.dim() == 2 else -1
    expected = ((C,), (C,), (R, C), (R,), (C, R), (C,))
    names = ("norm_weight", "norm_bias", "reduce_weight", "reduce_bias", "select_weight", "select_bias")
    for name, t, shape in zip(names, params, expected):
        if tuple(t.shape) != shape or R < 1:
            raise _err(f"{name} must have shape {shape} for C = {C}, got {tuple(t.shape)}")
    if not gated_sum_train_supported(y, *params):
        raise _err("y and the parameters must be CPU tensors of one dtype, float32 or float64")
    if not float(eps) >= 0:
        raise _err(f"eps must be >= 0, got {eps}")
    return _GatedSumTrain.apply(_native.unit_last(y), *params, float(eps))


def gated_sum_reference(y: torch.Tensor, norm_weight, norm_bias, reduce_weight, reduce_bias, select_weight,
                        select_bias, eps: float = 1e-5) -> torch.Tensor:
    """PyTorch reference of :func:`gated_sum_channels_last_train` (SCAttn's module path, then the sum)."""
    g = F.layer_norm(y, y.shape[-1:], norm_weight, norm_bias, eps).mean(-2, keepdim=True)
    s = torch.sigmoid(F.linear(F.gelu(F.linear(g, reduce_weight, reduce_bias)), select_weight, select_bias))
    return (y * s).sum(1)
