"""LocalMamba: windowed-scan vision state space models with fast CPU and CUDA kernels."""
from __future__ import annotations

import importlib
import os
import sys

from . import _C  # noqa: F401  (the native extension; built by `pip install .`)

__version__ = _C.build_info()["version"]

if os.environ.get("LOCALMAMBA_THREAD_POOL", "own") != "own":  # the one value it takes; anything else is ignored
    import warnings

    warnings.warn(f"LOCALMAMBA_THREAD_POOL={os.environ['LOCALMAMBA_THREAD_POOL']!r} is ignored: the only value is "
                  "'own' (unset: share the process's OpenMP team)", stacklevel=2)

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


def get_cmake_dir() -> str:
    """The folder holding localmambaConfig.cmake inside the installed package, for other projects'
    `find_package(localmamba)` (pass it as localmamba_DIR or in CMAKE_PREFIX_PATH); it ships the
    static C++ core (and CUDA library when built) with the public headers. Also printed by
    `python -m localmamba --cmake-dir`."""
    # Beside the extension module: in an editable install the Python sources stay in the checkout
    # while the installed build products (the extension, libraries, headers) live elsewhere.
    folder = os.path.join(os.path.dirname(os.path.abspath(_C.__file__)), "share", "cmake", "localmamba")
    if not os.path.isfile(os.path.join(folder, "localmambaConfig.cmake")):
        raise FileNotFoundError(
            f"no localmambaConfig.cmake in {folder}: this localmamba was not installed from a wheel or"
            " `pip install .` (a source checkout has none; `cmake --install` a CMake build instead)"
        )
    return folder


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
