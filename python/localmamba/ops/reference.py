"""Pure-PyTorch reference implementations of every op, written from the SPEC.

They are the ground truth in tests and an explicit fallback (``backend="reference"``);
the library never falls back to them silently. They favour clarity over speed:
``local_scan`` uses pad / reshape / permute, ``selective_scan`` is a sequential loop.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ._checks import LAYOUTS, ArgChecks
from .directions import SCAN_FAMILIES, ScanDirection, parse_direction, parse_directions, scan_length

__all__ = [
    "scan_order",
    "local_scan",
    "local_reverse",
    "selective_scan",
    "gather_tokens",
    "scatter_tokens",
    "directional_selective_scan",
]


def _grid_positions(H: int, W: int, device=None) -> torch.Tensor:
    return torch.arange(H * W, device=device, dtype=torch.long).view(H, W)


def _visit(grid: torch.Tensor, direction: ScanDirection, fill: float) -> torch.Tensor:
    """grid: (H, W, *rest). Returns (L, *rest) in visit order; padding tokens take `fill`."""
    k = direction.padding_multiple
    if k > 1:
        H, W = grid.shape[0], grid.shape[1]
        padded = grid.new_full((-(-H // k) * k, -(-W // k) * k, *grid.shape[2:]), fill)
        padded[:H, :W] = grid
        grid = padded
    seq = SCAN_FAMILIES[direction.family].visit(grid, k)
    return seq.flip(0) if direction.flip else seq


def visit_order(direction: ScanDirection, H, W, device=None) -> torch.Tensor:
    """Unchecked ``scan_order`` for a parsed direction, from torch ops only (traceable; H, W may be symbolic)."""
    return _visit(_grid_positions(H, W, device), direction, -1)


def scan_order(direction: Union[str, ScanDirection], H: int, W: int) -> torch.Tensor:
    """Spatial positions (int64) visited by `direction`; -1 marks padding tokens."""
    d = parse_direction(direction)
    scan_length(d, H, W)  # validates H, W
    return visit_order(d, H, W)


_scan_checks = ArgChecks("reference.local_scan")
_reverse_checks = ArgChecks("reference.local_reverse")


def _to_bchw(x: torch.Tensor, H: int, W: int, layout: str) -> torch.Tensor:
    if layout == "BCHW":
        return x
    if layout == "BCL":
        return x.reshape(x.shape[0], x.shape[1], H, W)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], H, W)


def local_scan(
    x: torch.Tensor, directions: Union[str, Sequence[str]], H: int, W: int, layout: str = "BCHW"
) -> torch.Tensor:
    """Spatial tokens -> (B, K, C, Lmax) scanned sequences, zero padding, padded to the longest."""
    dirs = parse_directions(directions)
    _scan_checks.choice("layout", layout, LAYOUTS)
    grid = _to_bchw(x, H, W, layout).permute(2, 3, 0, 1)  # (H, W, B, C)
    lmax = max(scan_length(d, H, W) for d in dirs)
    outs = []
    for d in dirs:
        seq = _visit(grid, d, 0.0)  # (L, B, C)
        seq = F.pad(seq.permute(1, 2, 0), (0, lmax - seq.shape[0]))  # (B, C, Lmax)
        outs.append(seq)
    return torch.stack(outs, dim=1).contiguous()


def local_reverse(
    y: torch.Tensor,
    directions: Union[str, Sequence[str]],
    H: int,
    W: int,
    reduce: Optional[str] = None,
    layout: str = "BCHW",
) -> torch.Tensor:
    """(B, K, C, Lmax) sequences -> spatial tokens per direction (or summed with reduce="sum").

    Output: layout "BCHW" -> (B, K, C, H, W); "BCL" -> (B, K, C, H*W); "BLC" -> (B, K, H*W, C);
    with reduce="sum" the K axis is summed away.
    """
    dirs = parse_directions(directions)
    _reverse_checks.choice("layout", layout, LAYOUTS)
    _reverse_checks.choice("reduce", reduce, (None, "sum"))
    B, K, C, _ = y.shape
    outs = []
    for k, d in enumerate(dirs):
        order = scan_order(d, H, W).to(y.device)
        seq = y[:, k, :, : order.numel()]
        keep = order >= 0
        spatial = y.new_zeros(B, C, H * W)
        spatial[:, :, order[keep]] = seq[:, :, keep]
        outs.append(spatial)
    out = torch.stack(outs, dim=1)  # (B, K, C, HW)
    if reduce == "sum":
        out = out.sum(dim=1)
        if layout == "BCHW":
            return out.reshape(B, C, H, W)
        return out if layout == "BCL" else out.transpose(1, 2).contiguous()
    if layout == "BCHW":
        return out.reshape(B, K, C, H, W)
    return out if layout == "BCL" else out.transpose(2, 3).contiguous()


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
    return_last_state: bool = False,
    initial_state: Optional[torch.Tensor] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Sequential selective scan (SPEC section 1.2); same arguments as Mamba's selective_scan_fn.

    u, delta: (B, D, L); A: (D, N); B, C: (B, N, L) or grouped (B, G, N, L);
    D: (D,); z: (B, D, L); delta_bias: (D,); initial_state: (B, D, N).
    Computes in float32 (float64 when u is float64); y has u's dtype.
    """
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u = u.to(compute)
    delta = delta.to(compute)
    A = A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[..., None]
    if delta_softplus:
        delta = torch.where(delta > 20, delta, F.softplus(delta))
    batch, dim, length = u.shape
    n_state = A.shape[1]

    def per_channel(t: torch.Tensor) -> torch.Tensor:  # -> (B, D, N, L)
        t = t.to(compute)
        if t.dim() == 3:
            return t.unsqueeze(1).expand(batch, dim, n_state, length)
        groups = t.shape[1]
        return t.repeat_interleave(dim // groups, dim=1)

    Bc, Cc = per_channel(B), per_channel(C)
    decay = torch.exp(delta.unsqueeze(2) * A.unsqueeze(-1))  # (B, D, N, L)
    drive = delta.unsqueeze(2) * Bc * u.unsqueeze(2)  # (B, D, N, L)
    state = (
        initial_state.to(compute)
        if initial_state is not None
        else u.new_zeros(batch, dim, n_state)
    )
    # unbind (not indexing) along time: its backward is one stack, not L full-size scatters.
    ys = []
    for decay_t, drive_t, c_t in zip(decay.unbind(-1), drive.unbind(-1), Cc.unbind(-1)):
        state = decay_t * state + drive_t
        ys.append((state * c_t).sum(-1))
    y = torch.stack(ys, dim=-1) if length > 0 else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D.to(compute)[..., None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(dtype_in)
    if return_last_state:
        return y, state
    return y


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Token-order rows -> scanned sequences through an index table (K, Lmax), zeros at -1.

    x: (B, C, T) shared by the directions, or (B, K, C, T). Returns (B, K, C, Lmax). This is
    ``local_scan`` for an arbitrary table.
    """
    K = index.shape[0]
    if x.dim() == 3:
        x = x.unsqueeze(1).expand(x.shape[0], K, *x.shape[1:])
    valid = (index >= 0).to(x.dtype)
    seqs = [x[:, k][..., index[k].clamp(min=0)] * valid[k] for k in range(K)]
    return torch.stack(seqs, dim=1)


def scatter_tokens(y: torch.Tensor, index: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Scanned sequences (B, K, C, Lmax) -> token order (B, K, C, T), padding steps dropped
    (``local_reverse`` for an arbitrary table)."""
    B, K, C, _ = y.shape
    outs = []
    for k in range(K):
        keep = index[k] >= 0
        out = y.new_zeros(B, C, num_tokens)
        out[:, :, index[k][keep]] = y[:, k][:, :, keep]
        outs.append(out)
    return torch.stack(outs, dim=1)


def directional_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    index: torch.Tensor,
    num_tokens: int,
    D: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = True,
    z: Optional[torch.Tensor] = None,
    reduce: Optional[str] = None,
    weights: Optional[torch.Tensor] = None,
    dt_proj_weight: Optional[torch.Tensor] = None,
    layout: str = "BCL",
) -> torch.Tensor:
    """The composition the fused op replaces: gather (local_scan) -> selective_scan over K*D
    channels with grouped B/C -> scatter back (local_reverse) -> optional weights / sum over K.

    Arguments as ``localmamba.ops.directional_selective_scan`` with the index table given
    explicitly; u of rank 3 is token order (every input gathered, zeros at padding), rank 4
    sequence order (inputs used as they are).
    """
    K, lmax = index.shape
    seq = u.dim() == 4
    index = index.to(u.device)

    def to_seq(t):
        return t if t is None or seq else gather_tokens(t, index)

    us, ds, Bs, Cs, zs = (to_seq(t) for t in (u, delta, B, C, z))
    batch, _, dim, _ = us.shape
    if dt_proj_weight is not None:
        w = dt_proj_weight.reshape(K, dim, dt_proj_weight.shape[-1]).to(ds.dtype)
        ds = torch.einsum("bkrl,kdr->bkdl", ds, w)
    y = selective_scan(
        us.reshape(batch, K * dim, lmax), ds.reshape(batch, K * dim, lmax), A, Bs, Cs, D=D,
        z=None if zs is None else zs.reshape(batch, K * dim, lmax), delta_bias=delta_bias,
        delta_softplus=delta_softplus,
    ).view(batch, K, dim, lmax)
    if weights is not None:
        y = (y.to(weights.dtype) * weights.view(1, K, 1, 1)).to(y.dtype)
    out = scatter_tokens(y, index, num_tokens)  # (B, K, D, T)
    if reduce == "sum":
        out = out.sum(1)
    if layout == "BLC":
        out = out.transpose(-1, -2).contiguous()
    return out
