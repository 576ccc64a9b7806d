"""Building the configured model: registry name or `module:callable`, per-layer directions,
optional pretrained initialisation."""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Dict, List, Optional

import torch

from ..search import read_directions
from . import distributed as D
from .checkpoint import extract_state_dict
from .config import ConfigError

__all__ = ["build_model", "load_pretrained", "resolve_directions", "unwrap_model"]


def _model_factory(name: str) -> Callable[..., torch.nn.Module]:
    if ":" in name:
        module_name, attr = name.split(":", 1)
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"model.name {name!r}: cannot import {attr!r} from {module_name!r}: {e}") from None
    try:
        from ..models import create_model, list_models
    except ImportError as e:
        raise RuntimeError(f"localmamba.models is not available: {e}") from None
    available = list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(available)}")
    return lambda **kw: create_model(name, **kw)


def resolve_directions(value) -> Optional[List[List[str]]]:
    if value is None:
        return None
    try:
        return read_directions(value)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"model.directions: {e}") from None


def build_model(cfg: Dict[str, Any], num_classes: int, in_chans: int) -> torch.nn.Module:
    m = cfg["model"]
    kwargs = dict(m["kwargs"])
    kwargs.update(num_classes=num_classes, img_size=cfg["data"]["img_size"], in_chans=in_chans,
                  drop_path_rate=m["drop_path"])
    directions = resolve_directions(m["directions"])
    if directions is not None:
        kwargs["directions"] = directions
    try:
        model = _model_factory(m["name"])(**kwargs)
    except (TypeError, ValueError) as e:  # a keyword the model does not take, or a bad value
        raise ConfigError(f"model {m['name']!r} rejects its arguments (check model.kwargs / model.directions): "
                          f"{e}") from None
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model factory {m['name']!r} returned {type(model).__name__}, not an nn.Module")
    if m["pretrained"]:
        load_pretrained(model, m["pretrained"])
    return model


def load_pretrained(model: torch.nn.Module, path: str) -> None:
    """Initialise from a checkpoint (ours, the release's, or safetensors); tensors whose
    shapes differ (e.g. a classifier for another number of classes) are skipped."""
    path = os.path.expanduser(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        sd = extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in sd if k in own and own[k].shape != sd[k].shape)
    missing, unexpected = model.load_state_dict(usable, strict=False)
    if D._active() and torch.distributed.get_rank() != 0:
        return
    print(f"[pretrained] loaded {len(usable)} tensors from {path}"
          + (f"; skipped (shape mismatch): {', '.join(skipped)}" if skipped else "")
          + (f"; not in checkpoint: {len(missing)}" if missing else ""), flush=True)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
