"""The release's per-module initialisation, shared by both families (SPEC 1.3)."""
from __future__ import annotations

import torch.nn as nn

__all__ = ["init_linear_and_layernorm"]


def init_linear_and_layernorm(m: nn.Module) -> None:
    """trunc_normal(std 0.02) Linear weights and zero biases; affine LayerNorms weight 1, bias 0.
    Other modules are left as they are."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
