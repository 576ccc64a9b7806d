"""Gradient checkpointing for both families (timm's ``set_grad_checkpointing``): each block's
activations are recomputed in backward instead of stored, trading one more forward for memory."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["GradCheckpointing"]


class GradCheckpointing:
    """Mixin for a model class: ``set_grad_checkpointing`` and ``run_block``, which its forward
    calls for every block. Checkpointing applies only while gradients are recorded (inference and
    export run the blocks as they are); the recompute replays the saved RNG state, so dropout and
    stochastic depth draw the same masks and outputs and gradients match a run without it."""

    grad_checkpointing: bool = False

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if not isinstance(enable, bool):
            raise TypeError(f"enable must be a bool, got {type(enable).__name__}")
        self.grad_checkpointing = enable

    def run_block(self, block: nn.Module, *args):
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)
