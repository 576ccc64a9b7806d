"""Loading checkpoints: official release files and our own, .pth/.ckpt/.safetensors."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

from ..nn.layers import resize_pos_embed

__all__ = ["load_checkpoint", "load_state_dict_file", "adapt_state_dict"]

_NESTED_KEYS = ("state_dict_ema", "model_ema", "model", "state_dict", "module")


def _unwrap(obj: Any, prefer_ema: bool) -> Dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        keys = list(_NESTED_KEYS)
        if not prefer_ema:
            keys = [k for k in keys if "ema" not in k] + [k for k in keys if "ema" in k]
        if not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for key in keys:
                if key in obj and isinstance(obj[key], Mapping):
                    return _unwrap(obj[key], prefer_ema)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(
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
        state = _unwrap(obj, prefer_ema)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _grid_of(n: int, fallback) -> tuple:
    side = int(math.isqrt(n))
    if side * side == n:
        return side, side
    return tuple(fallback)


def adapt_state_dict(model: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Makes a checkpoint fit the model: drops classifier keys for backbones and resizes the LocalVim
    position embedding / rotary tables (bicubic) when the model was built for another input size."""
    state = dict(state)
    if hasattr(model, "filter_state_dict"):
        state = model.filter_state_dict(state)
    from .local_vim import LocalVim, resize_pos_embed_with_prefix

    if isinstance(model, LocalVim):
        prefix = 1 if model.middle_cls_token else 0
        target_grid = tuple(model.grid_size)
        pe = state.get("pos_embed")
        if pe is not None and model.use_pos_embed and pe.shape != model.pos_embed.shape:
            old_grid = _grid_of(pe.shape[1] - prefix, target_grid)
            state["pos_embed"] = resize_pos_embed_with_prefix(pe, old_grid, target_grid, model.middle_cls_token)
        for key in ("rope.freqs_cos", "rope.freqs_sin"):
            t = state.get(key)
            if t is not None and model.use_rope and t.shape != getattr(model.rope, key.split(".")[1]).shape:
                old_grid = _grid_of(t.shape[0], target_grid)
                state[key] = resize_pos_embed(t.unsqueeze(0), old_grid, target_grid)[0]
    return state


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
        strict = not hasattr(model, "filter_state_dict")
    return model.load_state_dict(state, strict=strict)
