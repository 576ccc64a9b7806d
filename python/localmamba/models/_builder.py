"""The one entrypoint builder of both families: defaults + user kwargs -> classifier or backbone."""
from __future__ import annotations

from typing import Any, Dict, Type

import torch.nn as nn

from ._registry import TIMM_FACTORY_KWARGS

__all__ = ["build_model"]


def build_model(model_cls: Type[nn.Module], backbone_cls: Type[nn.Module], defaults: Dict[str, Any],
                kwargs: Dict[str, Any]) -> nn.Module:
    """``features_only=True`` builds the family's backbone (``out_indices`` picks its outputs)."""
    kwargs = {k: v for k, v in kwargs.items() if k not in TIMM_FACTORY_KWARGS}
    if kwargs.pop("pretrained", False):
        raise ValueError("released weights load through localmamba.create_model(name, pretrained=True) "
                         "(or timm.create_model); an entrypoint called directly builds random weights")
    features_only = kwargs.pop("features_only", False)
    args = dict(defaults)
    args.update(kwargs)
    if features_only:
        return backbone_cls(**args)
    args.pop("out_indices", None)
    return model_cls(**args)
