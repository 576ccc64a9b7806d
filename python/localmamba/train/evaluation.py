"""Evaluation: loss and top-1 / top-5 accuracy over a loader (summed over ranks), and the
`localmamba eval` driver that rebuilds a model from a checkpoint and its config."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Dict

import torch
import torch.nn.functional as F

from ..errors import UserError
from . import distributed as D
from .artifacts import check_architecture, load_weights
from .config import ConfigError

__all__ = ["autocast_context", "evaluate", "eval_config", "run_evaluation"]


def autocast_context(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, amp: str = "none",
             progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Loss, top-1 and top-5 accuracy (%) over the loader, summed over all ranks."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1, top5, count
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
    for x, y in it:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with autocast_context(device, amp):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, reduction="sum")
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        correct = topk.eq(y[:, None])
        totals += torch.tensor([loss.item(), correct[:, 0].sum().item(), correct.any(dim=1).sum().item(), len(y)],
                               dtype=torch.float64)
    model.train(was_training)
    t = D.all_reduce_sum(totals.to(device if device.type == "cuda" else "cpu")).cpu()
    n = max(1.0, float(t[3]))
    return {"loss": float(t[0]) / n, "acc1": 100.0 * float(t[1]) / n, "acc5": 100.0 * float(t[2]) / n, "count": int(t[3])}


def eval_config(ck, args, default_config: str) -> Dict[str, Any]:
    """The config to evaluate `ck` with: the run's own (checkpoint, config.yaml beside the weights,
    or the architecture recorded in them) with the flags given on the command line on top; a
    -c/--config file instead when given. Flags that would build another model are an error."""
    from .cli_common import explicit_overrides
    from .config import apply_overrides, default_config as defaults, load_config, validate_config

    explicit = explicit_overrides(args)
    if args.config or ck.recorded is None:
        if ck.recorded is None and not args.config and getattr(args, "flag_model__name", None) is None:
            raise UserError(f"{ck.flag} {ck.path}: these weights record no architecture; pass --model NAME (and "
                            "the data flags it was trained with, or -c CONFIG), or give the run folder")
        cfg = load_config(args.config or default_config, explicit)
    elif ck.config is not None:
        saved = ck.config
        saved["data"]["limit_train"] = None
        cfg = validate_config(apply_overrides(saved, explicit))
    else:
        base = load_config(default_config, [])
        arch = {"model": dict(ck.architecture["model"]),
                "data": {k: v for k, v in ck.architecture["data"].items() if k in base["data"]}}
        cfg = validate_config(apply_overrides(base, [arch, *explicit]))
    check_architecture(ck, cfg)
    return cfg


def run_evaluation(cfg: Dict[str, Any], ck, ema: bool = False) -> Dict[str, Any]:
    """Loss / top-1 / top-5 of the checkpoint's weights on cfg's validation split."""
    from ..data import build_datasets
    from ..data.loaders import build_eval_loader
    from .modeling import build_model

    dist_info, device = D.init_distributed(cfg["train"]["device"])
    try:
        if cfg["train"]["threads"]:
            torch.set_num_threads(cfg["train"]["threads"])
        _, val, info = build_datasets(cfg)
        loader = build_eval_loader(cfg, val, info, dist_info.rank, dist_info.world_size, device)
        num_classes = cfg["data"]["num_classes"] or info["num_classes"]
        in_chans = cfg["data"]["in_chans"] or info["in_chans"]
        cfg["model"]["pretrained"] = None
        model = build_model(cfg, num_classes, in_chans)
        load_weights(model, ck, cfg["model"]["name"])
        model.to(device)
        metrics = evaluate(model, loader, device, cfg["train"]["amp"], cfg["log"]["progress"] and dist_info.is_main)
    finally:
        D.cleanup_distributed()
    metrics.update(checkpoint=str(ck.path), model=cfg["model"]["name"], dataset=cfg["data"]["dataset"], ema=ema)
    return metrics
