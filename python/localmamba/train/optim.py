"""Optimizer parameter groups and the warm-up + cosine learning-rate schedule.

No weight decay for: biases (also 2-D stacked ones such as dt_projs_bias) and every other 1-D parameter (norm weights, D skips), the
SSM's A_log / A_logs and D / Ds, position embeddings, class tokens, anything the model
lists in `no_weight_decay()` (timm convention), and the search's direction logits α
(which get their own group, optionally with their own learning rate).
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List

import torch

from ..search import is_alpha

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "lr_factor", "no_decay_param"]

_NO_DECAY_BASENAME = re.compile(r"^(A_logs?|Ds?|D_skip)(_\d+)?$")
_NO_DECAY_SUFFIXES = ("pos_embed", "cls_token", "absolute_pos_embed", "relative_position_bias_table")


def no_decay_param(name: str, param: torch.Tensor, skip: set) -> bool:
    base = name.rsplit(".", 1)[-1]
    return (
        param.ndim <= 1
        or name in skip
        or base in skip
        or bool(_NO_DECAY_BASENAME.match(base))
        or base.endswith(_NO_DECAY_SUFFIXES)
        or base == "bias"
        or base.endswith("_bias")  # e.g. LocalVMamba's dt_projs_bias (K, d_inner)
    )


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float, alpha_lr=None,
                 alpha_weight_decay: float = 0.0) -> List[Dict[str, Any]]:
    skip = set()
    if hasattr(model, "no_weight_decay"):
        try:
            skip = set(model.no_weight_decay())
        except Exception:
            skip = set()
    decay, no_decay, alpha = [], [], []
    decay_names, no_decay_names, alpha_names = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if is_alpha(name):
            alpha.append(p)
            alpha_names.append(name)
        elif no_decay_param(name, p, skip):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr, "name": "decay", "param_names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr, "name": "no_decay", "param_names": no_decay_names},
    ]
    if alpha:
        groups.append({"params": alpha, "weight_decay": alpha_weight_decay, "lr": alpha_lr or lr,
                       "name": "alpha", "param_names": alpha_names})
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, cfg: Dict[str, Any], lr: float) -> torch.optim.Optimizer:
    o = cfg["optim"]
    alpha_lr = o["alpha_lr"]
    if alpha_lr is not None and o["lr_base_batch"]:
        alpha_lr = alpha_lr * lr / o["lr"]  # same linear scaling as the main lr
    groups = param_groups(model, o["weight_decay"], lr, alpha_lr, o["alpha_weight_decay"])
    for g in groups:
        g.pop("param_names")
    if o["opt"] != "adamw":  # validated earlier
        raise ValueError(f"unknown optimizer {o['opt']!r}")
    # foreach: the same arithmetic as the per-parameter loop (bit-identical updates), in a few
    # multi-tensor calls instead of ~10 per parameter (half the step's optimizer time on the CPU)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(o["betas"]), eps=o["eps"], foreach=True)


def lr_factor(step: int, total_steps: int, warmup_steps: int, lr: float, warmup_lr: float, min_lr: float) -> float:
    """Multiplier on the base lr at optimizer step `step`: linear warm-up from warmup_lr to lr
    over warmup_steps, then cosine decay to min_lr at total_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        value = warmup_lr + (lr - warmup_lr) * step / warmup_steps
    else:
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        value = min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return value / lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Dict[str, Any], lr: float, steps_per_epoch: int):
    """A per-step torch LambdaLR (its state_dict resumes exactly)."""
    s = cfg["sched"]
    total = s["epochs"] * steps_per_epoch
    warmup = int(round(s["warmup_epochs"] * steps_per_epoch))
    # warmup_lr / min_lr are absolute for the main lr; other groups scale proportionally
    warmup_lr, min_lr = min(s["warmup_lr"], lr), min(s["min_lr"], lr)

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, lr, warmup_lr, min_lr)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
