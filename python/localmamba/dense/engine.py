"""The training loop of `localmamba detect train` / `segment train`, and evaluation.

Iteration-based (the release's dense schedules count iterations). Reuses the classification
loop's pieces: distributed setup, autocast, atomic checkpoints with RNG states, metrics JSONL and
curves. Files in the output directory (rank 0): config.yaml, metrics.jsonl, curves.png, last.pt
(full state, resumable exactly), model.safetensors and summary.json at the end.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..train import distributed as D
from ..train.checkpoint import (atomic_save_safetensors, atomic_torch_save, atomic_write_bytes, get_rng_state,
                                load_training_checkpoint, set_rng_state)
from ..train.config import ConfigError, dump_config
from ..train.evaluation import autocast_context
from ..train.metrics import MetricsWriter, plot_curves, read_metrics
from ..train.modeling import unwrap_model
from .builders import build_dense_datasets, build_dense_model, build_dense_optimizer, build_dense_scheduler
from .config import with_dense_defaults
from .datasets import SeededBatchSampler, collate_detection, collate_segmentation
from .evaluation import SegmentationMeter, coco_evaluate, detections_to_coco, slide_logits

__all__ = ["run_dense_training", "evaluate_dense", "load_dense_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "localmamba-dense/1"


def _to_device_targets(targets: List[Dict[str, Any]], device) -> List[Dict[str, Any]]:
    return [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()
             if k in ("boxes", "labels", "masks")} for t in targets]


def _check_ranks_agree(model, world: int) -> None:
    """Every rank must hold the same parameters (DDP averages the gradients); a divergence would
    make rank 0's checkpoint describe a run that did not happen, so it stops the run."""
    params = [p.detach() for p in model.parameters()]
    local = torch.stack([sum(p.double().sum() for p in params), sum(p.double().square().sum() for p in params)]).cpu()
    sums = [None] * world
    torch.distributed.all_gather_object(sums, local.tolist())
    if any(s != sums[0] for s in sums):
        raise RuntimeError(f"the {world} processes hold different parameters (sum, sum of squares per rank: {sums})")


def _train_losses(model, batch, task: str, device) -> Dict[str, torch.Tensor]:
    if task == "detection":
        images, targets = batch
        return model([im.to(device) for im in images], _to_device_targets(targets, device))
    images, labels = batch
    return model(images.to(device), labels.to(device))


@torch.no_grad()
def evaluate_dense(model, dataset, cfg: Dict[str, Any], device, info: Dict[str, Any],
                   progress: bool = False) -> Dict[str, Any]:
    """COCO box / mask AP (detection) or mIoU / mAcc / aAcc (segmentation) on ``dataset``."""
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    amp = cfg["train"]["amp"]
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="eval", leave=False, dynamic_ncols=True, file=sys.stderr)
    try:
        if cfg["task"] == "detection":
            results: List[Dict[str, Any]] = []
            for i in indices:
                image, target = dataset[i]
                with autocast_context(device, amp):
                    output = model([image.to(device)])[0]
                output = {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in output.items()}
                results.extend(detections_to_coco(output, target, info["category_ids"]))
            metrics: Dict[str, Any] = coco_evaluate(dataset.coco, results, image_ids=dataset.ids)
            metrics["detections"] = len(results)
        else:
            meter = SegmentationMeter(info["num_classes"])
            e = cfg["eval"]
            for i in indices:
                image, label = dataset[i]
                x = image.unsqueeze(0).to(device)
                with autocast_context(device, amp):
                    if e["mode"] == "slide":
                        logits = slide_logits(model, x, info["num_classes"], e["crop"], e["stride"])
                    else:
                        logits = model(x)
                logits = torch.nn.functional.interpolate(logits.float(), size=label.shape, mode="bilinear",
                                                         align_corners=False)
                meter.update(logits.argmax(1)[0].cpu(), label)
            metrics = meter.compute()
        metrics["images"] = len(dataset)
    finally:
        model.train(was_training)
    return metrics


def _headline(task: str, m: Dict[str, Any]) -> str:
    if task == "detection":
        return (f"box AP {m['bbox_AP']:.2f} (AP50 {m['bbox_AP50']:.2f}, AP75 {m['bbox_AP75']:.2f}) | "
                f"mask AP {m['segm_AP']:.2f} (AP50 {m['segm_AP50']:.2f}, AP75 {m['segm_AP75']:.2f})")
    return f"mIoU {m['mIoU']:.2f} | mAcc {m['mAcc']:.2f} | aAcc {m['aAcc']:.2f}"


def _loader(dataset, sampler, task: str, workers: int, device):
    collate = collate_detection if task == "detection" else collate_segmentation
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                       pin_memory=device.type == "cuda", persistent_workers=False,
                                       generator=torch.Generator())  # leaves the global RNG alone (exact resume)


def run_dense_training(cfg: Dict[str, Any], resume: Optional[str] = None) -> Dict[str, Any]:
    """Trains a detector or segmenter as configured; returns the summary dict."""
    dist_info, device = D.init_distributed(cfg["train"]["device"])
    try:
        return _run(cfg, resume, dist_info, device)
    finally:
        D.cleanup_distributed()


def _resume_config(cfg, resume: str):
    ckpt = load_training_checkpoint(resume)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{resume!r} is not a localmamba detect/segment training checkpoint")
    saved = with_dense_defaults(ckpt["config"])
    saved["log"] = cfg["log"]
    saved["output"]["dir"] = str(Path(resume) if Path(resume).is_dir() else Path(resume).parent)
    for key in ("stop_after_steps", "device", "threads"):
        saved["train"][key] = cfg["train"][key]
    saved["data"]["workers"] = cfg["data"]["workers"]
    saved["data"]["root"] = cfg["data"]["root"] or saved["data"]["root"]
    return saved, ckpt


def _run(cfg, resume, dist_info, device) -> Dict[str, Any]:
    ckpt = None
    if resume:
        cfg, ckpt = _resume_config(cfg, resume)
    t_cfg, task = cfg["train"], cfg["task"]
    is_main, rank, world = dist_info.is_main, dist_info.rank, dist_info.world_size
    log = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)
    if t_cfg["threads"]:
        torch.set_num_threads(t_cfg["threads"])
    if t_cfg["amp"] == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16")
    torch.manual_seed(t_cfg["seed"])  # the same initial weights on every rank

    train_ds, val_ds, info = build_dense_datasets(cfg)
    num_classes = cfg["model"]["num_classes"] or info["num_classes"]
    cfg["model"]["num_classes"] = num_classes
    model = build_dense_model(cfg, num_classes if task == "detection" else num_classes,
                              log=log if ckpt is None else (lambda *a: None)).to(device)
    if dist_info.distributed and task == "segmentation":
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # PyTorch's SyncBatchNorm runs on GPUs only
            log("[segmentation] CPU processes: BatchNorm statistics are per process (SyncBatchNorm needs CUDA)")
    optimizer = build_dense_optimizer(model, cfg)
    scheduler = build_dense_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=t_cfg["amp"] == "fp16")
    sampler = SeededBatchSampler(len(train_ds), t_cfg["batch_size"], t_cfg["seed"], rank, world)
    total = cfg["sched"]["iters"]
    epoch, batch, step = 0, 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, batch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        else:
            log(f"[resume] RNG states saved for {len(rng)} processes, this run has {world}: reseeding")
            torch.manual_seed(t_cfg["seed"] + rank + 7919 * step)
    else:
        torch.manual_seed(t_cfg["seed"] + rank)
    train_model = model
    if dist_info.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    out_dir, metrics = None, None
    if is_main:
        out_dir = Path(os.path.expanduser(cfg["output"]["dir"])) if cfg["output"]["dir"] else \
            Path("runs") / f"{'detect' if task == 'detection' else 'segment'}-{cfg['model']['backbone']}-" \
                           f"{cfg['data']['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}"
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and (out_dir / "last.pt").exists():
            raise ConfigError(f"{out_dir} already holds a run (last.pt); continue it with --resume {out_dir} "
                              "or choose another --output")
        cfg["output"]["dir"] = str(out_dir)
        dump_config(cfg, out_dir / "config.yaml")
        metrics = MetricsWriter(out_dir / "metrics.jsonl", truncate_after_step=step if ckpt else None)
        if ckpt is None:
            metrics.write({"event": "start", "step": 0, "task": task, "backbone": cfg["model"]["backbone"],
                           "params": sum(p.numel() for p in model.parameters()), "world_size": world,
                           "device": str(device), "train_images": len(train_ds), "val_images": len(val_ds)})
    cfg["output"]["dir"] = D.broadcast_object(cfg["output"]["dir"])
    log(f"[{task}] {cfg['model']['backbone']} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params) | "
        f"{cfg['data']['dataset']}: {len(train_ds)} train / {len(val_ds)} val images, {num_classes} classes | "
        f"{world} process(es) on {device} | {total} iterations x {t_cfg['batch_size'] * world} images | "
        f"output {cfg['output']['dir']}")

    def save() -> None:
        rng = [get_rng_state()]
        if D._active():
            _check_ranks_agree(model, world)
            rng = [None] * world
            torch.distributed.all_gather_object(rng, get_rng_state())
        if not is_main:
            return
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "config": cfg, "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng": rng,
                           "epoch": epoch, "batch_in_epoch": batch, "step": step, "info": info,
                           "world_size": world}, out_dir / "last.pt")

    def validate() -> Dict[str, Any]:
        result = evaluate_dense(model, val_ds, cfg, device, info, cfg["log"]["progress"]) if is_main else {}
        result = D.broadcast_object(result)
        log(f"[{task}] step {step}: {_headline(task, result)}")
        if metrics is not None:
            metrics.write({"event": "eval", "step": step, **{k: v for k, v in result.items() if k != "IoU"}})
        return result

    clip, amp, interval = cfg["optim"]["clip_grad"], t_cfg["amp"], cfg["log"]["interval"]
    stop_at = t_cfg["stop_after_steps"]
    last_eval: Dict[str, Any] = {}
    t_start = time.time()
    stopped = False
    bar = None
    if cfg["log"]["progress"] and is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=task, dynamic_ncols=True, file=sys.stderr, leave=False)
    train_model.train()
    while step < total and not stopped:
        if batch >= sampler.batches_per_epoch:
            epoch, batch = epoch + 1, 0
        sampler.start(epoch, batch)
        for data in _loader(train_ds, sampler, task, cfg["data"]["workers"], device):
            with autocast_context(device, amp):
                losses = _train_losses(train_model, data, task, device)
            loss = sum(v.float() for v in losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at step {step}: "
                                         f"{ {k: float(v) for k, v in losses.items()} } (lower optim.lr or set "
                                         "optim.clip_grad)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            grad_norm = None
            if clip:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step, batch = step + 1, batch + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if metrics is not None and (step % interval == 0 or step == total):
                rec = {"event": "step", "step": step, "epoch": epoch, "loss": loss.item(),
                       **{k: v.item() for k, v in losses.items()}, "lr": optimizer.param_groups[0]["lr"],
                       "time": round(time.time() - t_start, 3)}
                if grad_norm is not None:
                    rec["grad_norm"] = grad_norm
                metrics.write(rec)
            stop_now = stop_at is not None and step >= stop_at
            if t_cfg["eval_every"] and step % t_cfg["eval_every"] == 0 and step < total:
                last_eval = validate()
            if step == total or stop_now or (t_cfg["checkpoint_every"] and step % t_cfg["checkpoint_every"] == 0):
                save()
            if stop_now and step < total:
                stopped = True
            if step >= total or stopped:
                break
    if bar is not None:
        bar.close()
    train_time = round(time.time() - t_start, 3)
    if not stopped:
        last_eval = validate()
    summary = {"task": task, "backbone": cfg["model"]["backbone"], "output_dir": cfg["output"]["dir"], "step": step,
               "stopped_early": stopped, "train_time_s": train_time,
               **{k: v for k, v in last_eval.items() if k != "IoU"}}
    if is_main:
        if not stopped:
            atomic_save_safetensors(model.state_dict(), out_dir / "model.safetensors")
        metrics.write({"event": "end", **summary})
        metrics.close()
        if cfg["output"]["plots"]:
            plot_curves(read_metrics(out_dir / "metrics.jsonl"), out_dir / "curves.png",
                        f"{cfg['model']['backbone']} {task} on {cfg['data']['dataset']}")
        atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        if stopped:
            log(f"[{task}] stopped after step {step} (train.stop_after_steps); continue with --resume {out_dir}")
        else:
            log(f"[{task}] done in {train_time:.1f}s: {_headline(task, last_eval)} | outputs in {out_dir}")
    return summary


def load_dense_checkpoint(path: str):
    """(config, model with the checkpoint's weights, info) from a run directory or last.pt."""
    ckpt = load_training_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path!r} is not a localmamba detect/segment checkpoint")
    cfg, info = with_dense_defaults(ckpt["config"]), ckpt["info"]
    cfg["model"]["pretrained"] = None
    model = build_dense_model(cfg, cfg["model"]["num_classes"], log=lambda *a: None)
    model.load_state_dict(ckpt["model"])
    return cfg, model, info
