"""Building blocks shared by the LocalVim and LocalVMamba families.

Module and parameter names follow the official release so its checkpoints load with
``strict=True`` (SPEC section 1.5).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.directions import SEARCH_CANDIDATES
from ..ops.scan_table import ScanTable, build_scan_table, parsed_directions, scan_table, tracing

__all__ = [
    "RMSNorm",
    "DropPath",
    "PatchEmbed",
    "RotaryEmbedding2D",
    "SCAttn",
    "MultiScan",
    "to_2tuple",
    "canonical_directions",
]


def to_2tuple(x: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"expected an int or a pair of ints, got {x!r}")
        return int(x[0]), int(x[1])
    return int(x), int(x)


def canonical_directions(directions: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Validates a list of direction names ('h', 'w7_flip', ...) and returns them canonicalised."""
    return tuple(d.name for d in parsed_directions(directions))


class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight only (Mamba's RMSNorm; eps 1e-5 in the release)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or at rate 0)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if self.scale_by_keep:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class PatchEmbed(nn.Module):
    """Conv patchify; inputs whose size is not a multiple of the patch are zero-padded (right/bottom)."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768, flatten: bool = True):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.in_chans = in_chans
        self.flatten = flatten
        self.grid_size = tuple(math.ceil(s / p) for s, p in zip(self.img_size, self.patch_size))
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def grid_for(self, H: int, W: int) -> Tuple[int, int]:
        return math.ceil(H / self.patch_size[0]), math.ceil(W / self.patch_size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_chans)
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        pad_h, pad_w = (ph - H % ph) % ph, (pw - W % pw) % pw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        return x


def _specialized(n: int) -> int:
    """``n`` as a plain int; under torch.compile a symbolic size becomes a constant guarded by
    Dynamo (``len(range(n))`` is the conversion Dynamo specialises; ``int(n)`` stays symbolic)."""
    return len(range(n))


def check_image(x, in_chans: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected an image tensor (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected an image batch of shape (B, {in_chans}, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} image channels, got {x.shape[1]} (input shape {tuple(x.shape)}); "
            f"build the model with in_chans={x.shape[1]} for other inputs"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}")
    if tracing():
        # torch.compile(dynamic=True): the image size is specialised (one graph per size, guarded)
        # and only the batch stays symbolic; the scan tables' window tiling of a symbolic grid
        # would cost minutes of symbolic reasoning per compile.
        _specialized(x.shape[-2]), _specialized(x.shape[-1])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Pairs (x0, x1), (x2, x3), ... -> (-x1, x0), (-x3, x2), ..."""
    x = x.unflatten(-1, (-1, 2))
    x1, x2 = x.unbind(-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class RotaryEmbedding2D(nn.Module):
    """2-D rotary position embedding over a token grid (EVA-02 / Vim "fast" form).

    Half the channels rotate with the row position, half with the column position; positions are
    scaled so that the grid spans ``pt_seq_len`` (the pre-training grid). ``freqs_cos`` /
    ``freqs_sin`` (HW, dim) are persistent buffers, as in the release's state dicts.
    """

    def __init__(self, embed_dim: int, grid_size: Tuple[int, int], pt_seq_len: int = 14, theta: float = 10000.0):
        super().__init__()
        if embed_dim % 4 != 0:
            raise ValueError(f"rotary embedding needs embed_dim divisible by 4, got {embed_dim}")
        self.embed_dim = embed_dim
        self.pt_seq_len = pt_seq_len
        self.theta = theta
        self.grid_size = tuple(grid_size)
        cos, sin = self.compute(self.grid_size)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)

    def compute(self, grid_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        dim = self.embed_dim // 2  # channels per axis
        inv = 1.0 / (self.theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))

        def axis(n: int) -> torch.Tensor:
            t = torch.arange(n) / n * self.pt_seq_len
            return (t[:, None] * inv[None, :]).repeat_interleave(2, dim=-1)  # (n, dim)

        H, W = grid_size
        fh, fw = axis(H), axis(W)
        freqs = torch.cat((fh[:, None, :].expand(H, W, dim), fw[None, :, :].expand(H, W, dim)), dim=-1)
        freqs = freqs.reshape(H * W, 2 * dim)
        return freqs.cos(), freqs.sin()

    def tables(self, grid_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for a grid; other grids than the built one are resized bicubically (as released)."""
        if tuple(grid_size) == self.grid_size:
            return self.freqs_cos, self.freqs_sin
        cos = resize_pos_embed(self.freqs_cos.unsqueeze(0), self.grid_size, grid_size)[0]
        sin = resize_pos_embed(self.freqs_sin.unsqueeze(0), self.grid_size, grid_size)[0]
        return cos, sin

    @staticmethod
    def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return t * cos + _rotate_half(t) * sin

    def forward(self, t: torch.Tensor, grid_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        cos, sin = self.tables(grid_size or self.grid_size)
        return self.rotate(t, cos, sin)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, grid_size={self.grid_size}, pt_seq_len={self.pt_seq_len}"


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: Tuple[int, int], new_grid: Tuple[int, int],
                     mode: str = "bicubic") -> torch.Tensor:
    """(1, Ho*Wo, C) -> (1, Hn*Wn, C) by interpolation on the token grid (align_corners=False)."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid == new_grid:
        return pos_embed
    if pos_embed.dim() != 3 or pos_embed.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(
            f"position embedding of shape {tuple(pos_embed.shape)} does not match a {old_grid[0]}x{old_grid[1]} grid"
        )
    dtype = pos_embed.dtype
    grid = pos_embed.float().reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(dtype)


class SCAttn(nn.Module):
    """Channel gate of the release ("BiAttn" with its spatial branch disabled).

    s = sigmoid(W2 · GELU(W1 · mean_tokens(LayerNorm(y)))), out = y · s. Works on (..., L, C):
    the mean runs over the token axis (-2), so K directions can be gated in one call.
    """

    def __init__(self, in_channels: int, act_ratio: float = 0.125, eps: float = 1e-5):
        super().__init__()
        reduce_channels = int(in_channels * act_ratio)
        self.norm = nn.LayerNorm(in_channels, eps=eps)
        self.global_reduce = nn.Linear(in_channels, reduce_channels)
        self.act_fn = nn.GELU()
        self.channel_select = nn.Linear(reduce_channels, in_channels)
        self.gate_fn = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.norm(x).mean(-2, keepdim=True)
        g = self.act_fn(self.global_reduce(g))
        return x * self.gate_fn(self.channel_select(g))


class MultiScan(nn.Module):
    """Holds a layer's scan directions (parsed once, here) and their scan tables, and merges the K
    per-direction outputs.

    ``scan_table(H, W, device)`` gives the layer's :class:`~localmamba.ops.scan_table.ScanTable`
    for a grid, kept per (grid, class token, device), so a forward parses no direction name.

    Fixed architecture: plain sum. Search supernet (``search=True``): each direction's output
    goes through its own LayerNorm without affine, then the sum is weighted by softmax(α), with
    α = ``weights`` (K, 1, 1, 1) initialised to 1e-3·randn (SPEC section 1).
    ``with_attn`` puts the shared SCAttn here (LocalVMamba layout: ``multi_scan.attn``).
    """

    def __init__(self, dim: int, directions: Sequence[str], search: bool = False,
                 with_attn: bool = False, eps: float = 1e-5):
        super().__init__()
        self.scan_directions = parsed_directions(directions)
        self.directions = tuple(d.name for d in self.scan_directions)
        self._tables: Dict[tuple, ScanTable] = {}
        self.search = bool(search)
        if self.search:
            self.norms = nn.ModuleList([nn.LayerNorm(dim, eps=eps, elementwise_affine=False) for _ in self.directions])
            self.weights = nn.Parameter(1e-3 * torch.randn(len(self.directions), 1, 1, 1))
        if with_attn:
            self.attn = SCAttn(dim)

    @property
    def num_directions(self) -> int:
        return len(self.directions)

    def scan_table(self, H: int, W: int, device: torch.device, cls_index: Optional[int] = None) -> ScanTable:
        """This layer's scan table on an H x W grid (class token at ``cls_index``), on ``device``."""
        if tracing():  # torch.compile / export: built from torch ops in the graph, no cache
            # A symbolic grid (dynamic=True) is specialised: the window tiling of every direction
            # would otherwise be reasoned about symbolically (minutes of compile time); each grid
            # size compiles once, the batch stays dynamic.
            H, W = _specialized(H), _specialized(W)
            return build_scan_table(self.scan_directions, H, W, device,
                                    None if cls_index is None else _specialized(cls_index))
        key = (H, W, cls_index, device)
        table = self._tables.get(key)
        if table is None:
            with torch.inference_mode(False):  # a cached table outlives the call: never an inference tensor
                table = self._tables[key] = scan_table(self.scan_directions, H, W, device, cls_index)
        return table

    def direction_weights(self) -> torch.Tensor:
        """softmax(α) for a supernet (K,), uniform ones for a fixed architecture."""
        if self.search:
            return self.weights.detach().view(-1).softmax(0)
        return torch.ones(self.num_directions)

    def merge(self, ys: torch.Tensor) -> torch.Tensor:
        """ys: (B, K, L, C) in spatial order -> (B, L, C)."""
        if not self.search:
            return ys.sum(1)
        w = self.weights.softmax(0).view(1, -1, 1, 1).to(ys.dtype)
        normed = torch.stack([norm(ys[:, k]) for k, norm in enumerate(self.norms)], dim=1)
        return (normed * w).sum(1)

    def extra_repr(self) -> str:
        return f"directions={list(self.directions)}, search={self.search}"


def supernet_candidates() -> Tuple[str, ...]:
    return SEARCH_CANDIDATES
