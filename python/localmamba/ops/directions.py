"""Scan-direction names and lengths, in pure Python (SPEC section 1.1).

Used for argument checking and by the fake (meta) kernels, which must know output shapes
without running anything. The native library has its own parser; tests check they agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence, Tuple, Union

__all__ = [
    "ScanDirection",
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

_PATTERN = re.compile(r"^(h|v|w([0-9]{1,9})(_col)?)(_flip)?$")
_ACCEPTED = "expected 'h', 'v', 'wK' or 'wK_col' (K a positive integer), optionally followed by '_flip'"


@dataclass(frozen=True)
class ScanDirection:
    kind: str  # "h", "v", "w" (row-first windows) or "wcol" (column-first windows)
    window: int = 1
    flip: bool = False

    @property
    def name(self) -> str:
        if self.kind == "h" or self.kind == "v":
            base = self.kind
        elif self.kind == "w":
            base = f"w{self.window}"
        else:
            base = f"w{self.window}_col"
        return base + ("_flip" if self.flip else "")


def parse_direction(name: Union[str, ScanDirection]) -> ScanDirection:
    if isinstance(name, ScanDirection):
        return name
    if not isinstance(name, str):
        raise TypeError(f"direction must be a str such as 'h' or 'w7_flip', got {type(name).__name__}")
    match = _PATTERN.match(name)
    if match is None:
        raise ValueError(f"unknown scan direction {name!r}: {_ACCEPTED}")
    base, digits, col, flip = match.groups()
    if base in ("h", "v"):
        return ScanDirection(base, 1, flip is not None)
    window = int(digits)
    if window < 1:
        raise ValueError(f"direction {name!r}: window size must be >= 1, got {window}")
    return ScanDirection("wcol" if col else "w", window, flip is not None)


def parse_directions(directions: Union[str, Iterable[str]]) -> Tuple[ScanDirection, ...]:
    """Accepts a list of names or one comma-separated string."""
    if isinstance(directions, str):
        directions = [d.strip() for d in directions.split(",") if d.strip()]
    parsed = tuple(parse_direction(d) for d in directions)
    if not parsed:
        raise ValueError("directions must name at least one scan direction, got an empty list")
    return parsed


def _check_grid(H: int, W: int) -> None:
    for arg, value in (("H", H), ("W", W)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")


def scan_length(direction: Union[str, ScanDirection], H: int, W: int) -> int:
    """Tokens visited by one direction on an H x W grid, padding included."""
    _check_grid(H, W)
    d = parse_direction(direction)
    if d.kind in ("h", "v"):
        length = H * W
    else:
        k = d.window
        length = -(-H // k) * k * (-(-W // k) * k)
    if length > MAX_SCAN_LENGTH:
        message = (
            f"scan direction {d.name!r} on an H={H} x W={W} grid implies a sequence of {length} tokens;"
            f" the limit is {MAX_SCAN_LENGTH} tokens per sequence"
        )
        if d.kind not in ("h", "v"):
            message += (
                " (the grid is padded to multiples of the window, and a window larger than the grid pads it"
                f" to one K x K window, so K may be at most {MAX_SCAN_WINDOW})"
            )
        raise ValueError(message)
    return length


def max_scan_length(directions: Sequence[Union[str, ScanDirection]], H: int, W: int) -> int:
    return max(scan_length(d, H, W) for d in parse_directions(directions))
