"""Parameters and FLOPs of a model, in fvcore's convention or the LocalMamba paper's.

``convention="fvcore"`` (the default, "honest"): one multiply-add per FLOP for every matmul,
linear, einsum and convolution each time it runs; LayerNorm as 5 (4 without affine) and adaptive
average pooling as 1 per input element, as fvcore's default handles do; other elementwise ops
are free. Each selective scan adds 9·B·L·D·N + B·D·L (the release's own handle for
LocalVMamba), with L the length actually scanned (window padding included).

``convention="paper"`` reproduces the release's numbers (SPEC 1.6): for LocalVim its analytic
count, which counts conv1d, x_proj and dt_proj once per layer instead of once per direction and a
scan as 5·D·L·N + 2·D·L; LocalVMamba's published numbers already use the fvcore convention.

The model runs once on a batch of one, on its own device (the meta device works: build the
model under ``with torch.device("meta")`` to profile without allocating weights). Scans are
counted but not computed.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .nn.scan import count_scans

__all__ = ["profile", "ProfileResult", "CONVENTIONS"]

CONVENTIONS = ("fvcore", "paper")
aten = torch.ops.aten


@dataclass
class ProfileResult:
    params: int
    flops: int
    input_size: Tuple[int, int, int]
    convention: str
    scan_flops: int = 0
    breakdown: Dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def __str__(self) -> str:
        c, h, w = self.input_size
        return (f"params {self.params:,} ({self.mparams:.2f} M), FLOPs {self.gflops:.3f} G "
                f"({self.convention} convention, input {c}x{h}x{w})")


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _conv_flops(args, out) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    if transposed:  # fvcore counts transposed convs over the input's spatial size
        return _numel(x.shape) * _numel(w.shape[1:])
    return _numel(out.shape) * _numel(w.shape[1:])


class _FlopCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: Dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        flops = 0
        if packet is aten.mm:
            flops = args[0].shape[0] * args[0].shape[1] * args[1].shape[1]
        elif packet is aten.addmm:
            flops = args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
        elif packet is aten.bmm:
            flops = args[0].shape[0] * args[0].shape[1] * args[0].shape[2] * args[1].shape[2]
        elif packet is aten.baddbmm:
            flops = args[1].shape[0] * args[1].shape[1] * args[1].shape[2] * args[2].shape[2]
        elif packet in (aten.convolution, aten._convolution, aten.convolution_overrideable):
            flops = _conv_flops(args, out)
        elif packet is aten.native_layer_norm:
            weight = args[2] if len(args) > 2 else kwargs.get("weight")
            flops = _numel(args[0].shape) * (5 if weight is not None else 4)
        elif packet is aten._adaptive_avg_pool2d:
            flops = _numel(args[0].shape)
        if flops:
            self.counts[str(packet).split(".")[-1]] += int(flops)
        return out


def _normalise_input_size(model: nn.Module, input_size) -> Tuple[int, int, int]:
    in_chans = getattr(model, "in_chans", 3)
    if isinstance(input_size, int):
        return in_chans, input_size, input_size
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (in_chans,) + size
    if len(size) == 3:
        return size
    if len(size) == 4 and size[0] == 1:
        return size[1:]
    raise ValueError(f"input_size must be S, (H, W) or (C, H, W), got {input_size!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _device_dtype(model: nn.Module):
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _fvcore_flops(model: nn.Module, size: Tuple[int, int, int]) -> Tuple[int, int, Dict[str, int]]:
    device, dtype = _device_dtype(model)
    x = torch.zeros((1,) + size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    counter = _FlopCounter()
    try:
        with torch.no_grad(), count_scans(skip_compute=True) as scans, counter:
            model(x)
    finally:
        model.train(was_training)
    breakdown = dict(counter.counts)
    breakdown.update(scans.other_flops)
    scan = sum(r.flops for r in scans.records)
    breakdown["selective_scan"] = scan
    return sum(breakdown.values()), scan, breakdown


def _local_vim_paper_flops(model, size: Tuple[int, int, int]) -> Tuple[int, int, Dict[str, int]]:
    """The release's ``VisionMamba.flops`` formula, evaluated on the grid of ``size``."""
    c_in, H, W = size
    gh, gw = model.patch_embed.grid_for(H, W)
    L = gh * gw + model.num_prefix_tokens
    ph, pw = model.patch_size
    patch = model.embed_dim * c_in * ph * pw * gh * gw
    layers = scan_total = 0
    for layer in model.layers:
        m = layer.mixer
        Di, N, C = m.d_inner, m.d_state, m.d_model
        f = C * 2 * Di * L  # in_proj
        f += (L + m.d_conv - 1) * Di * m.d_conv  # conv1d, once
        f += L * Di * (m.dt_rank + 2 * N)  # x_proj, once
        f += L * m.dt_rank * Di  # dt_proj, once
        scan = m.num_directions * (5 * Di * L * N + 2 * Di * L)
        scan_total += scan
        f += scan
        r = m.attn.global_reduce
        f += r.in_features * r.out_features + m.attn.channel_select.in_features * m.attn.channel_select.out_features
        f += L * Di * C  # out_proj
        f += L * C  # norm
        layers += f
    head = model.embed_dim * model.num_classes
    total = patch + layers + head
    return total, scan_total, {"patch_embed": patch, "layers": layers - scan_total, "selective_scan": scan_total,
                               "head": head}


def profile(model: nn.Module, input_size: Union[int, Sequence[int]] = 224, convention: str = "fvcore") -> ProfileResult:
    """Counts parameters and FLOPs (multiply-adds) of ``model`` on one image of ``input_size``.

    input_size: S, (H, W) or (C, H, W). convention: "fvcore" (honest, default) or "paper".
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    size = _normalise_input_size(model, input_size)
    from .models.local_vim import LocalVim, LocalVimBackbone

    if convention == "paper" and isinstance(model, LocalVim) and not isinstance(model, LocalVimBackbone):
        flops, scan, breakdown = _local_vim_paper_flops(model, size)
    else:
        flops, scan, breakdown = _fvcore_flops(model, size)
    return ProfileResult(count_parameters(model), int(flops), size, convention, int(scan), breakdown)
