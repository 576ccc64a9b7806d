"""Loading checkpoints: official release files and our own, .pth/.ckpt/.safetensors."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

__all__ = ["load_checkpoint", "load_state_dict_file", "adapt_state_dict", "extract_state_dict", "strip_prefixes",
           "StateDictNotFound"]

_MODEL_KEYS = ("model", "state_dict", "model_state", "module")
_EMA_KEYS = ("model_ema", "state_dict_ema")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile


class StateDictNotFound(ValueError, RuntimeError):
    """The object holds no model state dict."""


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Removes DDP ('module.') and torch.compile ('_orig_mod.') key prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def extract_state_dict(obj: Any, prefer_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint -- the one unwrapper of the library.

    Ours ("model", "model_ema"), the official release's ("model", "state_dict", "state_dict_ema"),
    nested ones, or a bare state dict; ``prefer_ema`` picks the EMA weights when both exist.
    Wrapper prefixes are stripped.
    """
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return strip_prefixes(obj)
        keys = _EMA_KEYS + _MODEL_KEYS if prefer_ema else _MODEL_KEYS + _EMA_KEYS
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                return extract_state_dict(obj[key], prefer_ema)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return strip_prefixes(tensors)
    raise StateDictNotFound(
        "checkpoint holds no state dict: expected a mapping of tensors, possibly under 'model', 'state_dict' "
        "or 'state_dict_ema'"
    )


def load_state_dict_file(path: Union[str, os.PathLike], prefer_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Reads a state dict from .pth/.pt/.ckpt/.bin (raw or nested) or .safetensors; strips 'module.'."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except Exception as exc:  # pragma: no cover - safetensors is a dependency
            raise ImportError("reading .safetensors needs the 'safetensors' package") from exc
        state = load_file(path, device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"could not read {path} as a PyTorch checkpoint with weights_only=True ({exc}); "
                "re-save it as a plain state dict or as .safetensors"
            ) from exc
        state = extract_state_dict(obj, prefer_ema)
    return strip_prefixes(state)


def adapt_state_dict(model: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Makes a checkpoint fit the model through its family's ``checkpoint_filter_fn`` (timm's
    convention): drops classifier keys for backbones, resizes position tables to the model's grid."""
    state = dict(state)
    filter_fn = getattr(model, "checkpoint_filter_fn", None)
    return filter_fn(state) if filter_fn is not None else state


def load_checkpoint(
    model: nn.Module,
    path: Union[str, os.PathLike],
    strict: Optional[bool] = None,
    prefer_ema: bool = False,
):
    """Loads weights from ``path`` into ``model`` and returns the incompatible keys.

    Accepts .pth/.pt/.ckpt (a raw state dict, or one under "model", "state_dict" or
    "state_dict_ema"; ``prefer_ema`` picks the EMA weights when both exist) and .safetensors.
    Official LocalMamba checkpoints load as they are (same keys). Position embeddings are resized
    when the model was built for another input size. ``strict`` defaults to True for classifiers
    and to False for backbones (whose extra output norms a classification checkpoint lacks).
    """
    state = load_state_dict_file(path, prefer_ema=prefer_ema)
    state = adapt_state_dict(model, state)
    if strict is None:
        strict = not getattr(model, "is_backbone", False)
    return model.load_state_dict(state, strict=strict)
