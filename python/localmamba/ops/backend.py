"""Which implementation the ops use: "native" (C++/CUDA kernels) or "reference" (pure PyTorch).

Chosen explicitly per call (`backend=`), or globally with `set_backend` / the
LOCALMAMBA_BACKEND environment variable. Never switched silently.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

BACKENDS = ("native", "reference")
_default = os.environ.get("LOCALMAMBA_BACKEND", "native")
if _default not in BACKENDS:
    raise ValueError(f"LOCALMAMBA_BACKEND must be one of {BACKENDS}, got {_default!r}")


def get_backend() -> str:
    return _default


def set_backend(backend: str) -> None:
    global _default
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _default = backend


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[None]:
    previous = get_backend()
    set_backend(backend)
    try:
        yield
    finally:
        set_backend(previous)


def resolve_backend(backend: Optional[str]) -> str:
    if backend is None:
        return _default
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    return backend
