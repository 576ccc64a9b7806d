"""Backbones for dense prediction: the registered classifiers built with ``features_only=True``,
and their initialisation from a classification checkpoint with a report of what was loaded."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..models import create_model, get_model_cfg
from ..models._checkpoint import adapt_state_dict, load_state_dict_file

__all__ = ["build_backbone", "backbone_family", "init_backbone", "BackboneInitReport"]


def backbone_family(name: str) -> str:
    """'local_vssm' or 'local_vim' for a registered model name (a clear error otherwise)."""
    family = get_model_cfg(name)["family"]
    if family not in ("local_vssm", "local_vim"):
        raise ValueError(f"backbone {name!r} is neither a LocalVMamba nor a LocalVim model (family {family!r})")
    return family


def build_backbone(name: str, out_indices: Optional[Sequence[int]] = None, drop_path_rate: Optional[float] = None,
                   img_size: Optional[int] = None, **kwargs: Any) -> nn.Module:
    """A ``features_only`` backbone returning a list of (B, C, H, W) maps."""
    family = backbone_family(name)
    if out_indices is not None:
        kwargs["out_indices"] = tuple(int(i) for i in out_indices)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = float(drop_path_rate)
    if img_size is not None and family == "local_vim":
        kwargs["img_size"] = int(img_size)  # the token grid of the position embedding and rotary tables
    return create_model(name, features_only=True, **kwargs)


@dataclass
class BackboneInitReport:
    """What a classification checkpoint gave the backbone."""

    path: str
    loaded: int
    dropped_classifier: List[str] = field(default_factory=list)
    fresh: List[str] = field(default_factory=list)  # the backbone's own output norms, not in any classifier

    def __str__(self) -> str:
        return (f"[backbone init] {self.loaded} tensors loaded from {self.path}; classifier keys dropped: "
                f"{len(self.dropped_classifier)}; freshly initialised (not in a classification checkpoint): "
                f"{', '.join(sorted({k.rsplit('.', 1)[0] for k in self.fresh})) or 'none'}")


def _is_output_norm(key: str) -> bool:
    return key.startswith("outnorm")


def init_backbone(backbone: nn.Module, source: Union[str, os.PathLike, Mapping[str, torch.Tensor]]) -> BackboneInitReport:
    """Loads a classification checkpoint (ours or the release's .pth/.ckpt/.safetensors) into a
    ``features_only`` backbone, strictly: every backbone parameter except the output norms must be
    in the checkpoint with the same shape, and the checkpoint may hold nothing but backbone and
    classifier keys. Raises ValueError naming the offending keys otherwise."""
    if isinstance(source, Mapping):
        state, path = dict(source), "<state dict>"
    else:
        path = os.fspath(source)
        state = load_state_dict_file(path)
    adapted = adapt_state_dict(backbone, state)
    dropped = sorted(set(state) - set(adapted))
    own = backbone.state_dict()
    unexpected = sorted(k for k in adapted if k not in own)
    missing = sorted(k for k in own if k not in adapted and not _is_output_norm(k))
    mismatched = sorted(k for k in adapted if k in own and tuple(adapted[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"not in the backbone: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if mismatched:
        problems.append("shape differs: " + ", ".join(
            f"{k} {tuple(adapted[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched[:8]))
    if problems:
        raise ValueError(f"checkpoint {path} does not fit backbone {type(backbone).__name__} "
                         f"(wrong model or variant?): " + "; ".join(problems))
    backbone.load_state_dict(adapted, strict=False)
    fresh = sorted(k for k in own if k not in adapted)
    return BackboneInitReport(path=path, loaded=len(adapted), dropped_classifier=dropped, fresh=fresh)


def backbone_channels(backbone: nn.Module) -> List[int]:
    return [int(info["num_chs"]) for info in backbone.feature_info]


def backbone_strides(backbone: nn.Module) -> List[int]:
    return [int(info["reduction"]) for info in backbone.feature_info]


def describe(backbone: nn.Module) -> Dict[str, Any]:
    return {"channels": backbone_channels(backbone), "strides": backbone_strides(backbone)}
