"""Forward-only (inference) passes of the two mixers around the channels-last scan, one memory pass each.

* :func:`scan_conv_channels_last` -- LocalVim: the causal depthwise conv1d (+ bias, SiLU) of every
  direction, reading the tokens straight through the scan index (no gathered copy);
* :func:`gate_stats_channels_last` -- SCAttn's token mean of a LayerNorm without affine, per direction;
* :func:`gated_merge_channels_last` -- sum_k gate_k * y_k, optionally followed by a LayerNorm and the
  z gate (SS2D's out_norm and ``* silu(z)``).

CPU kernels (``localmamba._C``, contract in ``cpp/include/localmamba/mixer_infer.h``), float32 /
float64, no gradient: the mixers call them only under ``torch.no_grad`` / ``inference_mode`` on the
CPU and keep the differentiable composition beside them (CUDA and training take that path). Each
has its PyTorch reference here (``*_reference``), which the tests compare against in float64.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _native
from .directional_scan_infer import channels_last_scan_supported

__all__ = [
    "scan_conv_channels_last",
    "gate_stats_channels_last",
    "gated_merge_channels_last",
    "scan_conv_channels_last_reference",
    "gate_stats_channels_last_reference",
    "gated_merge_channels_last_reference",
]


def _check(op: str, ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(f"{op}: {msg}")


def _shape(op: str, name: str, t: Optional[torch.Tensor], shape) -> None:
    if t is not None:
        _check(op, isinstance(t, torch.Tensor) and tuple(t.shape) == tuple(shape),
               f"{name} must have shape {tuple(shape)}, got {tuple(getattr(t, 'shape', ())) or type(t).__name__}")


def _supported(op: str, *tensors: Optional[torch.Tensor]) -> None:
    _check(op, channels_last_scan_supported(*tensors),
           "needs CPU float32 / float64 tensors of one dtype and no gradient")


def _rows(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return _native.unit_last(t)


# ---- LocalVim: causal conv1d along each scan, read through the index ---------------------------

@torch.library.custom_op("localmamba::scan_conv_infer", mutates_args=())
def _scan_conv_op(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  silu: bool) -> torch.Tensor:
    from .. import _C

    K, length = index.shape
    batch, tokens, dim = x.shape
    out = x.new_empty(K, batch, length, dim).transpose(0, 1)  # direction-major memory
    if batch == 0 or dim == 0:
        return out
    arg = _native.tensor_arg
    _C.scan_conv_infer(_C.ScanConvInferParams(
        dtype=_native.dtype_name(x.dtype), batch=batch, num_directions=K, dim=dim, length=length, num_tokens=tokens,
        taps=weight.shape[1], silu=silu, index=index.data_ptr(), x=arg(x), weight=arg(weight), bias=arg(bias),
        out=arg(out)))
    return out


@_scan_conv_op.register_fake
def _(x, index, weight, bias, silu):
    K, length = index.shape
    return x.new_empty(K, x.shape[0], length, x.shape[2]).transpose(0, 1)


def scan_conv_channels_last(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                            bias: Optional[torch.Tensor] = None, silu: bool = True) -> torch.Tensor:
    """u[b, k, t] = silu(bias[k] + sum_j weight[k, j] * x[b, index[k, t - taps + 1 + j]]) -> (B, K, L, D).

    x: (B, T, D) tokens (any strides, channels contiguous); index: (K, L) int64 on the CPU, -1 =
    padding step (reads zeros, as do steps before the start); weight: (K, taps, D); bias: (K, D).
    The result is a (B, K, L, D) view of direction-major memory (K, B, L, D), so each direction's
    steps form one matrix for the following projection.
    """
    op = "scan_conv_channels_last"
    _check(op, isinstance(x, torch.Tensor) and x.dim() == 3, f"x must be (B, T, D), got {getattr(x, 'shape', x)}")
    _check(op, isinstance(index, torch.Tensor) and index.dtype == torch.int64 and index.dim() == 2
           and index.device.type == "cpu", "index must be a CPU int64 tensor (K, L)")
    _supported(op, x, weight, bias)
    K, D = index.shape[0], x.shape[2]
    _check(op, isinstance(weight, torch.Tensor) and weight.dim() == 3 and 1 <= weight.shape[1] <= 16,
           "weight must be (K, taps, D) with 1 <= taps <= 16")
    _shape(op, "weight", weight, (K, weight.shape[1], D))
    _shape(op, "bias", bias, (K, D))
    return _scan_conv_op(_rows(x), index.contiguous(), _rows(weight), _rows(bias), silu)


def scan_conv_channels_last_reference(x, index, weight, bias=None, silu: bool = True) -> torch.Tensor:
    """PyTorch reference of :func:`scan_conv_channels_last` (gather, pad, shifted multiply-adds)."""
    B, T, D = x.shape
    K, L = index.shape
    taps = weight.shape[1]
    seq = x[:, index.clamp_min(0).reshape(-1)].view(B, K, L, D) * (index >= 0).to(x.dtype).view(1, K, L, 1)
    seq = F.pad(seq, (0, 0, taps - 1, 0))
    out = x.new_zeros(B, K, L, D) if bias is None else bias.view(1, K, 1, D).expand(B, K, L, D).clone()
    for j in range(taps):
        out = out + weight[:, j].view(1, K, 1, D) * seq[:, :, j:j + L]
    return F.silu(out) if silu else out


# ---- SCAttn's statistics and the gated merge ---------------------------------------------------

@torch.library.custom_op("localmamba::gate_stats_infer", mutates_args=())
def _gate_stats_op(y: torch.Tensor, eps: float) -> torch.Tensor:
    from .. import _C

    batch, K, tokens, dim = y.shape
    out = y.new_empty(batch, K, dim)
    if batch == 0 or dim == 0:
        return out
    params = _C.GateStatsInferParams(dtype=_native.dtype_name(y.dtype), batch=batch, num_directions=K, dim=dim,
                                     num_tokens=tokens, eps=eps, y=_native.tensor_arg(y), out=_native.tensor_arg(out))
    workspace = y.new_empty(_C.gate_stats_infer_workspace_elements(params))
    params.workspace, params.workspace_elements = workspace.data_ptr(), workspace.numel()
    _C.gate_stats_infer(params)
    return out


@_gate_stats_op.register_fake
def _(y, eps):
    return y.new_empty(y.shape[0], y.shape[1], y.shape[3])


def gate_stats_channels_last(y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """mean over tokens of LayerNorm(y) without affine: y (B, K, T, D) -> (B, K, D)."""
    op = "gate_stats_channels_last"
    _check(op, isinstance(y, torch.Tensor) and y.dim() == 4, f"y must be (B, K, T, D), got {getattr(y, 'shape', y)}")
    _check(op, y.shape[2] >= 1, "y needs at least one token")
    _check(op, float(eps) >= 0, f"eps must be >= 0, got {eps}")
    _supported(op, y)
    return _gate_stats_op(_rows(y), float(eps))


def gate_stats_channels_last_reference(y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return F.layer_norm(y, y.shape[-1:], eps=eps).mean(2)


@torch.library.custom_op("localmamba::gated_merge_infer", mutates_args=())
def _gated_merge_op(y: torch.Tensor, gate: torch.Tensor, norm_weight: Optional[torch.Tensor],
                    norm_bias: Optional[torch.Tensor], eps: float, z: Optional[torch.Tensor],
                    z_silu: bool) -> torch.Tensor:
    from .. import _C

    batch, K, tokens, dim = y.shape
    out = y.new_empty(batch, tokens, dim)
    if batch == 0 or dim == 0:
        return out
    arg = _native.tensor_arg
    _C.gated_merge_infer(_C.GatedMergeInferParams(
        dtype=_native.dtype_name(y.dtype), batch=batch, num_directions=K, dim=dim, num_tokens=tokens,
        y=arg(y), gate=arg(gate), normalize=norm_weight is not None, eps=eps, norm_weight=arg(norm_weight),
        norm_bias=arg(norm_bias), z=arg(z), z_silu=z_silu, out=arg(out)))
    return out


@_gated_merge_op.register_fake
def _(y, gate, norm_weight, norm_bias, eps, z, z_silu):
    return y.new_empty(y.shape[0], y.shape[2], y.shape[3])


def gated_merge_channels_last(y: torch.Tensor, gate: torch.Tensor, norm_weight: Optional[torch.Tensor] = None,
                              norm_bias: Optional[torch.Tensor] = None, eps: float = 1e-5,
                              z: Optional[torch.Tensor] = None, z_silu: bool = False) -> torch.Tensor:
    """m = sum_k gate[:, k, None] * y[:, k]; then LayerNorm(m) (norm_weight, norm_bias, eps) if a norm
    weight is given; then m * z (m * silu(z) with z_silu). y (B, K, T, D), gate (B, K, D), z (B, T, D)
    -> (B, T, D)."""
    op = "gated_merge_channels_last"
    _check(op, isinstance(y, torch.Tensor) and y.dim() == 4, f"y must be (B, K, T, D), got {getattr(y, 'shape', y)}")
    _check(op, (norm_weight is None) == (norm_bias is None), "give norm_weight and norm_bias together")
    _check(op, float(eps) >= 0, f"eps must be >= 0, got {eps}")
    _supported(op, y, gate, norm_weight, norm_bias, z)
    B, K, T, D = y.shape
    _shape(op, "gate", gate, (B, K, D))
    _shape(op, "norm_weight", norm_weight, (D,))
    _shape(op, "norm_bias", norm_bias, (D,))
    _shape(op, "z", z, (B, T, D))
    return _gated_merge_op(_rows(y), _rows(gate), _rows(norm_weight), _rows(norm_bias), float(eps), _rows(z),
                           bool(z_silu))


def gated_merge_channels_last_reference(y, gate, norm_weight=None, norm_bias=None, eps: float = 1e-5, z=None,
                                        z_silu: bool = False) -> torch.Tensor:
    m = (y * gate.unsqueeze(2)).sum(1)
    if norm_weight is not None:
        m = F.layer_norm(m, m.shape[-1:], norm_weight, norm_bias, eps)
    if z is not None:
        m = m * (F.silu(z) if z_silu else z)
    return m
