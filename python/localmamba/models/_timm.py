"""Registers every LocalMamba model in timm's registry when timm imports.

timm stays optional: any failure to import it (missing, or built against another torch, which
raises errors other than ImportError) leaves the models available through
``localmamba.create_model`` only.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from ._registry import _CFGS, _ENTRYPOINTS, create_model

TIMM_AVAILABLE = False
default_cfgs: Dict[str, Dict[str, Any]] = {}


def _make_entrypoint(name: str) -> Callable:
    def entrypoint(pretrained: bool = False, **kwargs: Any):
        checkpoint_path = kwargs.pop("checkpoint_path", None)
        return create_model(name, pretrained=pretrained, checkpoint_path=checkpoint_path, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = _ENTRYPOINTS[name].__doc__
    return entrypoint


def _register() -> bool:
    try:
        import timm  # noqa: F401
        from timm.models import is_model as timm_is_model
        from timm.models import register_model as timm_register_model
    except Exception:
        return False
    _timm_keys = ("url", "num_classes", "input_size", "pool_size", "crop_pct", "interpolation", "mean", "std",
                  "first_conv", "classifier")
    for name in sorted(_ENTRYPOINTS):
        if name in globals() and timm_is_model(name):
            continue
        default_cfgs[name] = {k: _CFGS[name][k] for k in _timm_keys}
        fn = _make_entrypoint(name)
        globals()[name] = fn
        try:
            timm_register_model(fn)
        except Exception:
            return False
    return True


TIMM_AVAILABLE = _register()
