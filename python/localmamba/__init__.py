"""LocalMamba: windowed-scan vision state space models with fast CPU and CUDA kernels."""
from __future__ import annotations

from . import _C  # noqa: F401  (the native extension; built by `pip install .`)

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """Facts about the native build: version, compiler, SIMD, CUDA architectures and status."""
    return dict(_C.build_info())
