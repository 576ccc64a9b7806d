"""ONNX export with standard operators only: localmamba's custom ops written as ONNX ``Scan`` loops.

A model is first captured with ``torch.export`` on its inference path (``torch.no_grad``: the
forward-only kernels); ``localmamba::directional_scan_infer`` is then decomposed into torch ops
whose recurrence is ``torch.scan`` (a higher-order op the ONNX exporter writes as one
ONNX ``Scan`` node), so the graph size does not depend on the sequence length. Everything around
the recurrence (the gathers through the scan table, the delta projection, softplus, the D skip,
the z gate, the scatter back to token order) is vectorised over all steps and directions. The
mixers' other inference kernels (scan-order conv, gate statistics, gated merge) decompose into
their PyTorch references.

Any other localmamba op left in the program has no translation, and the export fails naming it
(never a silent fallback).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from ..ops.scan_table import inverse_of

__all__ = ["ONNX_OPSET", "directional_scan_infer_decomposition", "export_onnx", "onnx_decompositions"]

ONNX_OPSET = 18


def _shared_steps(t: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T, C) token rows shared by the directions -> (B, K, L, C) through the scan table,
    zeros at padding steps."""
    return t[:, index.clamp_min(0)] * valid


def _own_steps(t: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, K, T, C) token rows of each direction -> (B, K, L, C) through that direction's row of
    the table, zeros at padding steps."""
    K, L = index.shape
    idx = index.clamp_min(0).view(1, K, L, 1).expand(t.shape[0], K, L, t.shape[-1])
    return torch.gather(t, 2, idx) * valid


def directional_scan_infer_decomposition(
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
    """``localmamba::directional_scan_infer`` (see ``localmamba.ops.directional_scan_channels_last``)
    from torch ops, the recurrence as one ``torch.scan`` over the L steps. Returns (B, K, T, D)."""
    from torch._higher_order_ops.scan import scan

    K, L = index.shape
    batch, dim = u.shape[0], u.shape[-1]
    n_state = A.shape[-1]
    valid = (index >= 0).to(u.dtype).view(1, K, L, 1)
    if sequence_inputs:  # LocalVim: u, dt, B, C already in sequence order (B, K, L, .)
        us, dts, Bs, Cs = u, delta, B, C
    else:  # LocalVMamba: token rows, read through the table
        us = _shared_steps(u, index, valid)
        dts, Bs, Cs = (_own_steps(t, index, valid) for t in (delta, B, C))
    if dt_weight is not None:  # low-rank dt (B, K, L, R) -> delta (B, K, L, D)
        dts = torch.einsum("bklr,kdr->bkld", dts, dt_weight)
    if delta_bias is not None:
        dts = dts + delta_bias.view(K, dim)[None, :, None, :]
    if delta_softplus:
        dts = torch.where(dts > 20, dts, F.softplus(dts))
    A = A.view(K, dim, n_state)

    def step(h, xs):
        d, x, b, c = xs  # (B, K, D), (B, K, D), (B, K, N), (B, K, N)
        h = torch.exp(d.unsqueeze(-1) * A) * h + (d * x).unsqueeze(-1) * b.unsqueeze(2)
        return h, (h * c.unsqueeze(2)).sum(-1)

    h0 = u.new_zeros(batch, K, dim, n_state)
    seq_first = [t.permute(2, 0, 1, 3) for t in (dts, us, Bs, Cs)]  # (L, B, K, .)
    _, ys = scan(step, h0, seq_first)
    y = ys.permute(1, 2, 0, 3)  # (B, K, L, D)
    if D is not None:
        y = y + us * D.view(1, K, 1, dim)
    if z is not None:
        zs = _shared_steps(z, index, valid) if z.dim() == 3 else z if sequence_inputs else _own_steps(z, index, valid)
        y = y * F.silu(zs)
    if weights is not None:
        y = y * weights.view(1, K, 1, 1).to(y.dtype)
    inverse = inverse_of(index, num_tokens)  # (K, T): the step at which each token is visited
    return torch.gather(y, 2, inverse.view(1, K, num_tokens, 1).expand(batch, K, num_tokens, dim))



def onnx_decompositions() -> Dict[torch._ops.OpOverload, Callable]:
    """The torch-op decomposition of every localmamba op an inference program may hold (the
    mixers' other inference kernels decompose into their PyTorch references, which share the
    ops' signatures)."""
    import localmamba.ops  # noqa: F401  (registers the ops)
    from ..ops import mixer_infer

    ops = torch.ops.localmamba
    return {
        ops.directional_scan_infer.default: directional_scan_infer_decomposition,
        ops.scan_conv_infer.default: mixer_infer.scan_conv_channels_last_reference,
        ops.gate_stats_infer.default: mixer_infer.gate_stats_channels_last_reference,
        ops.gated_merge_infer.default: mixer_infer.gated_merge_channels_last_reference,
    }


def _decomposed_program(model: torch.nn.Module, example: torch.Tensor) -> "torch.export.ExportedProgram":
    """The inference program of ``model`` at ``example``'s shape, localmamba's ops decomposed."""
    with torch.no_grad():
        program = torch.export.export(model.eval(), (example,))
    program = program.run_decompositions(onnx_decompositions())
    left = sorted({str(n.target) for n in program.graph.nodes
                   if n.op == "call_function" and str(n.target).startswith("localmamba.")})
    if left:
        raise NotImplementedError(f"no ONNX translation for {', '.join(left)} (add it to "
                                  f"localmamba.export.onnx.onnx_decompositions)")
    return program


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path) -> None:
    """Writes a standard-ONNX file (opset ONNX_OPSET, one self-contained file) of ``model``'s
    inference forward at ``example``'s shape; input "image", output "logits"."""
    program = _decomposed_program(model, example)
    onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                     input_names=["image"], output_names=["logits"], verbose=False)
    onnx_program.save(str(Path(path)), external_data=False)
