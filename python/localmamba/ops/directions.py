"""Scan-order families, direction names and lengths (SPEC section 1.1): the Python side.

A direction is a family (``h``, ``v``, ``w{K}``, ``w{K}_col``), its window K and an optional
``_flip``. :data:`SCAN_FAMILIES` is the one description of the families on this side: names are
parsed and printed from their patterns, lengths follow from the padding rule, and each family's
``visit`` is the pure-PyTorch reference order (``reference.scan_order``, traceable scan tables).
The native table in ``cpp/src/scan_order.cpp`` mirrors it; tests check the two agree name for
name and order for order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

from ._checks import check_grid

__all__ = [
    "ScanDirection",
    "ScanFamily",
    "SCAN_FAMILIES",
    "scan_family",
    "SEARCH_CANDIDATES",
    "PLAIN_DIRECTIONS",
    "parse_direction",
    "parse_directions",
    "scan_length",
    "max_scan_length",
    "MAX_SCAN_LENGTH",
]

#: The 8 candidates of the direction search (SPEC section 1).
SEARCH_CANDIDATES: Tuple[str, ...] = ("h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip")
#: Plain (non-windowed) directions used by the ablation baselines.
PLAIN_DIRECTIONS: Tuple[str, ...] = ("h", "h_flip", "v", "v_flip")

#: Longest scan sequence (padding included) the library builds; the C++ core enforces the same
#: limit (kMaxScanLength) before allocating. A window larger than the grid pads it to one K x K
#: window, so K is at most MAX_SCAN_WINDOW.
MAX_SCAN_LENGTH = 1 << 24
MAX_SCAN_WINDOW = 1 << 12

_WINDOW = "{K}"
_FLIP = "_flip"


@dataclass(frozen=True)
class ScanFamily:
    """A scan-order family: its name pattern and the order it visits the padded grid in.

    ``pattern`` is the direction name with ``{K}`` standing for a positive window size
    (``"w{K}_col"``); the grid is padded to multiples of K (K = 1 without ``{K}``). ``visit``
    takes that padded grid (Hp, Wp, *rest) and K and returns (Hp*Wp, *rest) in scan order, with
    tensor methods only, so it runs on index grids and on feature maps, and traces with
    symbolic sizes. ``_flip`` (the order reversed) applies to every family.
    """

    pattern: str
    visit: Callable

    @property
    def has_window(self) -> bool:
        return _WINDOW in self.pattern

    def match(self, base: str) -> Optional[int]:
        """The window size ``base`` names in this family (1 without a window), or None."""
        prefix, _, suffix = self.pattern.partition(_WINDOW)
        if not self.has_window:
            return 1 if base == prefix else None
        digits = base[len(prefix): len(base) - len(suffix)]
        fits = len(base) > len(prefix) + len(suffix) and base.startswith(prefix) and base.endswith(suffix)
        return int(digits) if fits and digits.isascii() and digits.isdigit() and len(digits) <= 9 else None

    def form(self) -> str:
        return self.pattern.replace(_WINDOW, "K")


#: Every scan-order family, by pattern, in the order of the native table (cpp/src/scan_order.cpp
#: scan_families(); tests check both list the same patterns and orders). Adding a family is one
#: ``@scan_family`` function here and one entry there.
SCAN_FAMILIES: Dict[str, ScanFamily] = {}


def scan_family(pattern: str) -> Callable[[Callable], Callable]:
    """Registers the decorated ``visit(padded_grid, k)`` as the family named by ``pattern``."""
    prefix, _, suffix = pattern.partition(_WINDOW) if isinstance(pattern, str) else ("", "", "")
    if not prefix or _WINDOW in suffix or pattern.endswith(_FLIP):
        raise ValueError(f"scan family pattern must be a name with at most one '{_WINDOW}' after its first "
                         f"character and no '{_FLIP}' suffix, got {pattern!r}")
    if pattern in SCAN_FAMILIES:
        raise ValueError(f"scan family {pattern!r} is already registered")

    def register(visit: Callable) -> Callable:
        SCAN_FAMILIES[pattern] = ScanFamily(pattern, visit)
        return visit

    return register


def _sequence(grid):
    """(a, b, *rest) -> (a*b, *rest)."""
    return grid.reshape(grid.shape[0] * grid.shape[1], *grid.shape[2:])


@scan_family("h")
def _row_major(grid, k):
    return _sequence(grid)


@scan_family("v")
def _column_major(grid, k):
    return _sequence(grid.transpose(0, 1))


def _windows(grid, k, order):
    """Tiles (gi, a, gj, b, *rest) permuted to ``order`` (a permutation of the first four axes)."""
    rows, cols, rest = grid.shape[0], grid.shape[1], grid.shape[2:]
    tiles = grid.reshape(rows // k, k, cols // k, k, *rest)
    return tiles.permute(*order, *range(4, 4 + len(rest))).reshape(rows * cols, *rest)


@scan_family("w{K}")
def _windows_row_major(grid, k):
    return _windows(grid, k, (0, 2, 1, 3))  # gi, gj, a, b


@scan_family("w{K}_col")
def _windows_column_major(grid, k):
    return _windows(grid, k, (2, 0, 3, 1))  # gj, gi, b, a


def _accepted_forms() -> str:
    forms = [f"'{f.form()}'" for f in SCAN_FAMILIES.values()]
    listed = forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]
    return f"expected {listed} (K a positive integer), optionally followed by '{_FLIP}'"


@dataclass(frozen=True)
class ScanDirection:
    family: str  # a pattern in SCAN_FAMILIES, e.g. "h" or "w{K}"
    window: int = 1  # K; 1 for a family without a window
    flip: bool = False

    @property
    def name(self) -> str:
        return self.family.replace(_WINDOW, str(self.window)) + (_FLIP if self.flip else "")

    @property
    def padding_multiple(self) -> int:
        """The grid is padded to multiples of this before the family visits it."""
        return self.window if _WINDOW in self.family else 1


def parse_direction(name: Union[str, ScanDirection]) -> ScanDirection:
    if isinstance(name, ScanDirection):
        return name
    if not isinstance(name, str):
        raise TypeError(f"direction must be a str such as 'h' or 'w7_flip', got {type(name).__name__}")
    flip = name.endswith(_FLIP) and len(name) > len(_FLIP)
    base = name[: -len(_FLIP)] if flip else name
    for family in SCAN_FAMILIES.values():
        window = family.match(base)
        if window is None:
            continue
        if window < 1:
            raise ValueError(f"direction {name!r}: window size must be >= 1, got {window}")
        return ScanDirection(family.pattern, window, flip)
    raise ValueError(f"unknown scan direction {name!r}: {_accepted_forms()}")


def parse_directions(directions: Union[str, Iterable[str]]) -> Tuple[ScanDirection, ...]:
    """Accepts a list of names or one comma-separated string."""
    if isinstance(directions, str):
        directions = [d.strip() for d in directions.split(",") if d.strip()]
    parsed = tuple(parse_direction(d) for d in directions)
    if not parsed:
        raise ValueError("directions must name at least one scan direction, got an empty list")
    return parsed


def scan_length(direction: Union[str, ScanDirection], H: int, W: int) -> int:
    """Tokens visited by one direction on an H x W grid, padding included."""
    check_grid(H, W)
    d = parse_direction(direction)
    k = d.padding_multiple
    length = -(-H // k) * k * (-(-W // k) * k)
    if length > MAX_SCAN_LENGTH:
        message = (
            f"scan direction {d.name!r} on an H={H} x W={W} grid implies a sequence of {length} tokens;"
            f" the limit is {MAX_SCAN_LENGTH} tokens per sequence"
        )
        if SCAN_FAMILIES[d.family].has_window:
            message += (
                " (the grid is padded to multiples of the window, and a window larger than the grid pads it"
                f" to one K x K window, so K may be at most {MAX_SCAN_WINDOW})"
            )
        raise ValueError(message)
    return length


def max_scan_length(directions: Sequence[Union[str, ScanDirection]], H: int, W: int) -> int:
    return max(scan_length(d, H, W) for d in parse_directions(directions))
