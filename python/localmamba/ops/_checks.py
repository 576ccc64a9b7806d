"""Argument checks shared by the scan ops: every failure is a TypeError / ValueError that starts
with the op's name and names the argument and what was expected.

The native layer (C++) re-checks only what protects memory (sizes, element types, pointers and
strides it indexes with); everything a user can get wrong is caught here first, once.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch

from ._native import FLOAT_DTYPES

MAX_DSTATE = 256  # == localmamba::kSelectiveScanMaxDstate
#: Token layouts of spatial tensors: (B, C, H, W), (B, C, H*W), (B, H*W, C).
LAYOUTS = ("BCHW", "BCL", "BLC")

Named = Iterable[Tuple[str, Optional[torch.Tensor]]]


def check_grid(H, W) -> None:
    """A token grid's height and width: ints >= 1."""
    for name, value in (("H", H), ("W", W)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class ArgChecks:
    """The checks of one op; `op` prefixes every message."""

    def __init__(self, op: str):
        self.op = op

    def message(self, text: str) -> str:
        return f"{self.op}: {text}"

    def tensors(self, required: Named, optional: Named = (), non_empty: bool = False) -> None:
        """Real floating-point tensors (None allowed for `optional`), non-empty if asked."""
        for tensors, may_be_none in ((required, False), (optional, True)):
            for name, t in tensors:
                if t is None and may_be_none:
                    continue
                if not isinstance(t, torch.Tensor):
                    kind = "a torch.Tensor or None" if may_be_none else "a torch.Tensor"
                    raise TypeError(self.message(f"{name} must be {kind}, got {type(t).__name__}"))
                if t.is_complex() or not t.is_floating_point():
                    raise TypeError(self.message(f"{name} must be a real floating-point tensor, got {t.dtype}"))
                if non_empty and t.numel() == 0:
                    raise ValueError(self.message(f"{name} must be non-empty, got shape {tuple(t.shape)}"))

    def flags(self, **flags) -> None:
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise TypeError(self.message(f"{name} must be a bool, got {type(value).__name__}"))

    def choice(self, name: str, value, choices: tuple) -> None:
        if value not in choices:
            raise ValueError(self.message(f"{name} must be one of {choices}, got {value!r}"))

    def kernel_tensor(self, name: str, t) -> None:
        """A non-empty tensor a native kernel takes: a dtype it has, on cpu or cuda (or meta)."""
        self.tensors(((name, t),), non_empty=True)
        self.kernel_dtype(name, t)
        if t.device.type not in ("cpu", "cuda", "meta"):
            raise ValueError(self.message(f"{name} must be on cpu or cuda, got {t.device}"))

    def kernel_dtype(self, name: str, t: torch.Tensor) -> None:
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(self.message(f"{name} must be float32, float16, bfloat16 or float64, got {t.dtype}"))

    def shape(self, name: str, t: Optional[torch.Tensor], shape: Tuple[int, ...], names: str) -> None:
        """`t` (when given) has exactly `shape`; `names` spells the shape out, e.g. "(batch, dim, L)"."""
        if t is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(self.message(f"{name} must have shape {names} = {tuple(shape)}, got {tuple(t.shape)}"))

    def state_size(self, n_state: int) -> None:
        if n_state > MAX_DSTATE:
            raise ValueError(self.message(f"the state size N = A.shape[1] must be <= {MAX_DSTATE}, got {n_state}"))

    def scan_dtypes(self, u: torch.Tensor, like_u: Named, B: torch.Tensor, C: torch.Tensor) -> None:
        """`like_u` share u's dtype; B and C share one dtype: u's, or float32 (float64 inputs: float64)."""
        for name, t in like_u:
            if t is not None and t.dtype != u.dtype:
                raise TypeError(self.message(f"{name} must have u's dtype {u.dtype}, got {t.dtype}"))
        if B.dtype != C.dtype:
            raise TypeError(self.message(f"B and C must have the same dtype, got {B.dtype} and {C.dtype}"))
        if B.dtype not in (u.dtype, torch.float32) or (u.dtype == torch.float64 and B.dtype != torch.float64):
            raise TypeError(self.message(f"B and C must have u's dtype {u.dtype} or float32, got {B.dtype}"))

    def same_device(self, u: torch.Tensor, others: Named) -> None:
        for name, t in others:
            if t is not None and t.device != u.device:
                raise ValueError(
                    self.message(f"{name} is on {t.device} but u is on {u.device}; all inputs must share a device")
                )
