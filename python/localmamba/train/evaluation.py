"""Evaluation: loss and top-1 / top-5 accuracy over a loader (summed over ranks), and the
`localmamba eval` driver that rebuilds a model from a checkpoint and its config."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Dict

import torch
import torch.nn.functional as F

from . import distributed as D
from .checkpoint import CHECKPOINT_FORMAT, extract_state_dict
from .config import ConfigError

__all__ = ["autocast_context", "evaluate", "run_evaluation"]


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


def run_evaluation(cfg: Dict[str, Any], checkpoint: str, ema: bool = False, user_config: bool = False,
                   args=None) -> Dict[str, Any]:
    """Evaluate a checkpoint on cfg's validation split. A localmamba training checkpoint
    supplies its own model and data config; flags given on the command line (`args`) still
    override it."""
    from ..data import build_datasets
    from ..data.loaders import build_eval_loader
    from .config import apply_overrides, validate_config
    from .modeling import build_model

    obj = None
    if not checkpoint.endswith(".safetensors"):
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT and not user_config:
        saved = obj["config"]
        saved["data"]["limit_train"] = None
        # re-apply only what the user set explicitly
        explicit = []
        if args is not None:
            from .cli_common import explicit_overrides

            explicit = explicit_overrides(args)
        cfg = validate_config(apply_overrides(saved, explicit))
    if args is not None and args.print_config:
        import yaml

        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        return {}

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
        if checkpoint.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(checkpoint)
        else:
            if ema and not (isinstance(obj, dict) and isinstance(obj.get("model_ema"), dict)):
                raise ConfigError(f"--ema: {checkpoint} holds no EMA weights (train with train.ema=true)")
            sd = extract_state_dict(obj, prefer_ema=ema)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            loader_fn = None
            try:
                from ..models import load_checkpoint as loader_fn  # official-release converter, if any
            except ImportError:
                pass
            if loader_fn is None:
                raise
            loader_fn(model, checkpoint)
        model.to(device)
        metrics = evaluate(model, loader, device, cfg["train"]["amp"], cfg["log"]["progress"] and dist_info.is_main)
    finally:
        D.cleanup_distributed()
    metrics.update(checkpoint=checkpoint, model=cfg["model"]["name"], dataset=cfg["data"]["dataset"], ema=ema)
    return metrics
