"""Model registry: ``@register_model`` entrypoints, ``create_model`` and ``list_models``.

Works without timm. When timm is importable the same entrypoints are also registered in timm's
registry (see ``localmamba.models._timm``), so ``timm.create_model("local_vim_tiny")`` works.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Dict, List, Optional

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "is_model", "model_entrypoint", "get_model_cfg"]

_ENTRYPOINTS: Dict[str, Callable[..., nn.Module]] = {}
_CFGS: Dict[str, Dict[str, Any]] = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Keyword arguments timm's factory passes to every entrypoint; create_model consumes them.
TIMM_FACTORY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def default_cfg(**overrides: Any) -> Dict[str, Any]:
    cfg = dict(
        url="",
        file="",
        sha256=None,
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=None,
        crop_pct=0.875,
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        first_conv="",
        classifier="head",
        paper_top1=None,
        family="",
        test_variant=False,
    )
    cfg.update(overrides)
    return cfg


def register_model(fn: Optional[Callable] = None, **cfg: Any):
    """Registers an entrypoint under its function name; keyword arguments become its default cfg."""

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _ENTRYPOINTS and _ENTRYPOINTS[name] is not f:
            raise ValueError(f"model {name!r} is registered twice")
        _ENTRYPOINTS[name] = f
        _CFGS[name] = default_cfg(**cfg)
        return f

    return wrap(fn) if fn is not None else wrap


def _ensure_loaded() -> None:
    from . import local_vim, local_vmamba  # noqa: F401  (importing registers the families)


def list_models(pattern: str = "*", include_test_variants: bool = True, family: Optional[str] = None) -> List[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _ensure_loaded()
    names = []
    for name, cfg in _CFGS.items():
        if not fnmatch.fnmatch(name, pattern):
            continue
        if not include_test_variants and cfg["test_variant"]:
            continue
        if family is not None and cfg["family"] != family:
            continue
        names.append(name)
    return sorted(names)


def is_model(name: str) -> bool:
    _ensure_loaded()
    return name in _ENTRYPOINTS


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    _ensure_loaded()
    if name not in _ENTRYPOINTS:
        close = [n for n in _ENTRYPOINTS if n.startswith(name.split("_")[0])] or sorted(_ENTRYPOINTS)
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(close))}")
    return _ENTRYPOINTS[name]


def get_model_cfg(name: str) -> Dict[str, Any]:
    model_entrypoint(name)
    return dict(_CFGS[name])


def create_model(
    model_name: str,
    pretrained: bool = False,
    checkpoint_path: Optional[str] = None,
    pretrained_cfg: Optional[Any] = None,
    pretrained_cfg_overlay: Optional[Dict[str, Any]] = None,
    cache_dir: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Builds a registered model; keyword arguments go to its constructor.

    ``pretrained=True`` downloads the release's checkpoint by its URL (once; cached, SHA-256
    checked when recorded; see ``localmamba.models._pretrained``) and loads it strictly;
    ``pretrained_cfg_overlay`` (timm's) overrides cfg fields such as ``url`` or ``file``;
    ``cache_dir`` is where downloads live. ``checkpoint_path`` loads a local file instead
    (official checkpoints load as they are). The model's ``pretrained_cfg`` records its cfg.
    """
    from ._pretrained import load_pretrained, resolve_pretrained_cfg

    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    fn = model_entrypoint(model_name)
    if pretrained and checkpoint_path:
        raise ValueError("give pretrained=True (the released weights) or checkpoint_path=... (a local file), not both")
    if hasattr(pretrained_cfg, "to_dict"):  # timm's PretrainedCfg
        pretrained_cfg = pretrained_cfg.to_dict()
    cfg = resolve_pretrained_cfg(dict(_CFGS[model_name], **(pretrained_cfg or {})), pretrained_cfg_overlay)
    model = fn(**kwargs)
    if pretrained:
        load_pretrained(model, model_name, cfg, cache_dir=cache_dir)
    elif checkpoint_path:
        from ._checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    model.pretrained_cfg = model.default_cfg = cfg
    return model
