"""LocalMamba: windowed-scan vision state space models with fast CPU and CUDA kernels."""
from __future__ import annotations

import importlib
import sys

from . import _C  # noqa: F401  (the native extension; built by `pip install .`)

__version__ = _C.build_info()["version"]

# Heavier entry points load on first use so `import localmamba` stays fast.
_LAZY = {
    "create_model": ("localmamba.models", "create_model"),
    "list_models": ("localmamba.models", "list_models"),
    "load_checkpoint": ("localmamba.models", "load_checkpoint"),
    "profile": ("localmamba.profiling", "profile"),
}


def build_info() -> dict:
    """Facts about the native build: version, compiler, SIMD, CUDA architectures and status."""
    return dict(_C.build_info())


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'localmamba' has no attribute {name!r}")


def _register_with_timm() -> None:
    """After ``import timm, localmamba`` every model is in timm's registry. Without timm imported
    nothing is imported here (registration then happens on ``import localmamba.models``), so
    ``import localmamba`` stays light."""
    if "timm" in sys.modules:
        importlib.import_module("localmamba.models")


_register_with_timm()
