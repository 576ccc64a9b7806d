"""Scan tables: a layer's scan directions on one token grid, parsed once, as index tensors.

A :class:`ScanTable` is what every op that reorders tokens takes: ``index`` (K, Lmax), the token
visited at each step of each direction (-1 = padding), ``inverse`` (K, T), the step at which each
direction visits each token, and ``num_tokens`` T. Layers own their parsed directions and ask
:func:`scan_table` for the table of the grid they run on; tables are built once per (directions,
grid, class-token index, device) by the native library and cached, so a forward parses no
direction name and calls nothing native to build them.

Under ``torch.compile`` / ``torch.export`` the same table is built from torch ops instead
(:func:`build_scan_table`, the pure-PyTorch mirror in ``reference.scan_order``), so the graph has
no Python side effects and no native call; tests check both builders agree.

The cached tensors are shared by every layer with the same directions and must not be edited:
the public helpers that hand a table's tensors to users (``scan_index_table``) return copies.
"""
from __future__ import annotations

import threading
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ._checks import check_grid
from .directions import ScanDirection, parse_directions, scan_length

__all__ = ["ScanTable", "scan_table", "build_scan_table", "parsed_directions", "tracing"]

DirectionsLike = Union[str, Sequence[Union[str, ScanDirection]]]


class ScanTable(NamedTuple):
    """K scan orders over one grid (immutable; its tensors are shared and read-only by contract)."""

    index: torch.Tensor  # (K, Lmax) int64: token at each step, -1 = padding
    inverse: torch.Tensor  # (K, T) int64: step at which each token is visited
    num_tokens: int  # T = H*W (+1 with a middle class token)
    directions: Tuple[str, ...]  # canonical names, for messages and repr

    @property
    def num_directions(self) -> int:
        return self.index.shape[0]

    @property
    def max_length(self) -> int:
        return self.index.shape[1]


def parsed_directions(directions: DirectionsLike) -> Tuple[ScanDirection, ...]:
    """Parses direction names (a list, or one comma-separated string) once, for a layer to keep."""
    if isinstance(directions, str):
        return parse_directions(directions)
    if not isinstance(directions, (list, tuple)):
        raise TypeError(f"directions must be a list of direction names such as ['h', 'w7_flip'], "
                        f"got {type(directions).__name__}")
    return parse_directions(list(directions))


def tracing() -> bool:
    """True while torch.compile / torch.export / FX trace the caller (no caches, no native calls)."""
    compiler = torch.compiler
    if compiler.is_compiling() or getattr(compiler, "is_exporting", lambda: False)():
        return True
    fx = torch.fx._symbolic_trace
    return getattr(fx, "is_fx_symbolic_tracing", fx.is_fx_tracing)()


def _check_cls_index(cls_index, H: int, W: int) -> None:
    if cls_index is None:
        return
    if isinstance(cls_index, bool) or not isinstance(cls_index, int) or not 0 <= cls_index <= H * W:
        raise ValueError(f"cls_index must be an int in [0, {H * W}] (H*W = {H}x{W}), got {cls_index!r}")


def _insert_class_token(index: torch.Tensor, cls_index: int) -> torch.Tensor:
    """Spatial token p moves to p + (p >= cls_index); every direction visits the class token at
    step ``cls_index`` (SPEC 1.3). (K, Lmax) -> (K, Lmax + 1)."""
    shifted = torch.where(index >= cls_index, index + 1, index)
    cls_col = torch.full((index.shape[0], 1), cls_index, dtype=index.dtype, device=index.device)
    return torch.cat([shifted[:, :cls_index], cls_col, shifted[:, cls_index:]], dim=1).contiguous()


def inverse_of(index: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """(K, L) table visiting each of ``num_tokens`` tokens once -> (K, T) step of each token.
    Written without data-dependent shapes (padding steps land in a dropped extra column)."""
    K, L = index.shape
    target = torch.where(index >= 0, index, torch.full_like(index, num_tokens))
    steps = torch.arange(L, dtype=index.dtype, device=index.device).expand(K, L)
    inverse = torch.full((K, num_tokens + 1), -1, dtype=index.dtype, device=index.device)
    return inverse.scatter(1, target, steps)[:, :num_tokens].contiguous()


def build_scan_table(directions: Tuple[ScanDirection, ...], H, W, device=None,
                     cls_index: Optional[int] = None) -> ScanTable:
    """The table from torch ops only (the reference scan orders), uncached: traceable by
    torch.compile / torch.export, also with symbolic H and W."""
    from .reference import visit_order

    orders = [visit_order(d, H, W, device) for d in directions]
    lmax = max(o.shape[0] for o in orders)
    index = torch.stack([torch.nn.functional.pad(o, (0, lmax - o.shape[0]), value=-1) for o in orders])
    num_tokens = H * W
    if cls_index is not None:
        index = _insert_class_token(index, cls_index)
        num_tokens += 1
    return ScanTable(index, inverse_of(index, num_tokens), num_tokens, tuple(d.name for d in directions))


def _native_table(directions: Tuple[ScanDirection, ...], H: int, W: int, device: torch.device,
                  cls_index: Optional[int]) -> ScanTable:
    from .. import _C

    names = [d.name for d in directions]
    forward, inverse, max_length = _C.scan_index_maps(names, H, W)
    index = torch.tensor(forward, dtype=torch.int64).view(len(names), max_length)
    num_tokens = H * W
    if cls_index is None:
        inverse_t = torch.tensor(inverse, dtype=torch.int64).view(len(names), num_tokens)
    else:
        index = _insert_class_token(index, cls_index)
        num_tokens += 1
        inverse_t = inverse_of(index, num_tokens)
    return ScanTable(index.to(device), inverse_t.to(device), num_tokens, tuple(names))


_CACHE: Dict[tuple, ScanTable] = {}
_CACHE_LOCK = threading.Lock()


def scan_table(directions: Union[DirectionsLike, Tuple[ScanDirection, ...]], H: int, W: int,
               device: Union[str, torch.device, None] = "cpu", cls_index: Optional[int] = None) -> ScanTable:
    """The cached table of ``directions`` on an H x W grid (with a class token at ``cls_index``).

    ``directions``: parsed directions (what layers keep) or names. Under torch.compile / export
    the table is built from torch ops in the graph instead (see :func:`build_scan_table`).
    """
    if not (isinstance(directions, tuple) and directions and all(isinstance(d, ScanDirection) for d in directions)):
        directions = parsed_directions(directions)
    if tracing():
        return build_scan_table(directions, H, W, device, cls_index)
    check_grid(H, W)
    _check_cls_index(cls_index, H, W)
    device = torch.device(device if device is not None else "cpu")
    key = (directions, H, W, cls_index, device)
    table = _CACHE.get(key)
    if table is None:
        for d in directions:
            scan_length(d, H, W)  # the size checks before anything is allocated
        table = _native_table(directions, H, W, device, cls_index)
        with _CACHE_LOCK:
            table = _CACHE.setdefault(key, table)
    return table
