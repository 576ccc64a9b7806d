"""The training / evaluation loop behind `localmamba train`, `search` and `eval`.

One function, `run_training(cfg)`, covers single-process CPU/GPU runs and DDP runs launched
by torchrun. Files (rank 0 only) in the output directory:

    config.yaml          the resolved configuration
    metrics.jsonl        one JSON object per line: {"event": "step"|"epoch"|"end", ...}
    curves.png           loss and accuracy curves
    last.pt / best.pt    full training state (atomic writes), resumable with --resume
    model.safetensors    final weights (and model_ema.safetensors, model_best.safetensors)
    summary.json         final metrics
    search runs also:    alpha_heatmap.png (per-layer direction probabilities), directions.json
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..data import build_loaders, build_mixup, set_train_epoch
from ..search import (
    alpha_probabilities,
    directions_record,
    get_alphas,
    plot_alpha_heatmap,
    read_directions,
    write_directions,
)
from . import distributed as D
from .checkpoint import (
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_bytes,
    extract_state_dict,
    get_rng_state,
    load_training_checkpoint,
    set_rng_state,
)
from .config import ConfigError, dump_config
from .metrics import MetricsWriter, plot_curves, read_metrics
from .optim import build_optimizer, build_scheduler

__all__ = ["run_training", "build_model", "evaluate", "autocast_context", "resolve_directions", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "localmamba-train/1"


# ----------------------------------------------------------------------------- model

def _model_factory(name: str) -> Callable[..., torch.nn.Module]:
    if ":" in name:
        module_name, attr = name.split(":", 1)
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"model.name {name!r}: cannot import {attr!r} from {module_name!r}: {e}") from None
    try:
        from ..models import create_model, list_models
    except ImportError as e:
        raise RuntimeError(f"localmamba.models is not available: {e}") from None
    available = list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(available)}")
    return lambda **kw: create_model(name, **kw)


def resolve_directions(value) -> Optional[List[List[str]]]:
    if value is None:
        return None
    try:
        return read_directions(value)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"model.directions: {e}") from None


def build_model(cfg: Dict[str, Any], num_classes: int, in_chans: int) -> torch.nn.Module:
    m = cfg["model"]
    kwargs = dict(m["kwargs"])
    kwargs.update(num_classes=num_classes, img_size=cfg["data"]["img_size"], in_chans=in_chans,
                  drop_path_rate=m["drop_path"])
    directions = resolve_directions(m["directions"])
    if directions is not None:
        kwargs["directions"] = directions
    model = _model_factory(m["name"])(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model factory {m['name']!r} returned {type(model).__name__}, not an nn.Module")
    if m["pretrained"]:
        load_pretrained(model, m["pretrained"])
    return model


def load_pretrained(model: torch.nn.Module, path: str) -> None:
    """Initialise from a checkpoint (ours, the release's, or safetensors); tensors whose
    shapes differ (e.g. a classifier for another number of classes) are skipped."""
    path = os.path.expanduser(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        sd = extract_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in sd if k in own and own[k].shape != sd[k].shape)
    missing, unexpected = model.load_state_dict(usable, strict=False)
    if D._active() and torch.distributed.get_rank() != 0:
        return
    print(f"[pretrained] loaded {len(usable)} tensors from {path}"
          + (f"; skipped (shape mismatch): {', '.join(skipped)}" if skipped else "")
          + (f"; not in checkpoint: {len(missing)}" if missing else ""), flush=True)


# ----------------------------------------------------------------------------- helpers

def autocast_context(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


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


def _default_output_dir(cfg: Dict[str, Any], command: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = cfg["model"]["name"].replace(":", "_").replace("/", "_").replace(".", "_")
    return Path("runs") / f"{command}-{name}-{cfg['data']['dataset']}-{stamp}"


def _gather_rng_states() -> List[Dict[str, Any]]:
    state = get_rng_state()
    if not D._active():
        return [state]
    out: List[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, state)
    return out


# ----------------------------------------------------------------------------- training

def run_training(cfg: Dict[str, Any], command: str = "train", resume: Optional[str] = None) -> Dict[str, Any]:
    """Train (or, for a supernet, search) as configured. Returns the summary dict."""
    dist_info, device = D.init_distributed(cfg["train"]["device"])
    try:
        return _run(cfg, command, resume, dist_info, device)
    finally:
        D.cleanup_distributed()


def _run(cfg, command, resume, dist_info: D.DistInfo, device: torch.device) -> Dict[str, Any]:
    t_cfg = cfg["train"]
    is_main = dist_info.is_main
    rank, world = dist_info.rank, dist_info.world_size
    log = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)
    if t_cfg["threads"]:
        torch.set_num_threads(t_cfg["threads"])
    if t_cfg["amp"] == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16")

    ckpt = None
    if resume:
        ckpt = load_training_checkpoint(resume)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise RuntimeError(f"{resume!r} is not a localmamba training checkpoint (no resumable state); "
                               "use model.pretrained to initialise from weights instead")
        saved = ckpt["config"]
        # the run continues with its own configuration, in its own directory; only logging,
        # device, data location / workers and the stop step may change
        saved["log"] = cfg["log"]
        saved["output"]["dir"] = str(Path(resume) if Path(resume).is_dir() else Path(resume).parent)
        saved["train"]["stop_after_steps"] = cfg["train"]["stop_after_steps"]
        saved["train"]["device"] = cfg["train"]["device"]
        saved["data"]["workers"] = cfg["data"]["workers"]
        saved["data"]["root"] = cfg["data"]["root"] or saved["data"]["root"]
        cfg = saved
        t_cfg = cfg["train"]

    # directions file -> explicit lists, so the run's config is self-contained
    cfg["model"]["directions"] = resolve_directions(cfg["model"]["directions"])

    seed = t_cfg["seed"]
    torch.manual_seed(seed)  # identical model init on every rank

    train_loader, val_loader, info = build_loaders(cfg, rank, world, device)
    num_classes = cfg["data"]["num_classes"] or info["num_classes"]
    in_chans = cfg["data"]["in_chans"] or info["in_chans"]
    if num_classes < info["num_classes"]:
        raise ConfigError(f"data.num_classes={num_classes} but the dataset has {info['num_classes']} classes")
    if in_chans != info["in_chans"]:
        raise ConfigError(f"data.in_chans={in_chans} but the dataset's images have {info['in_chans']} channels")
    cfg["data"]["num_classes"], cfg["data"]["in_chans"] = num_classes, in_chans

    model = build_model(cfg, num_classes, in_chans).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    is_search = bool(get_alphas(model))
    if command == "search" and not is_search:
        raise ConfigError(f"model {cfg['model']['name']!r} has no direction logits (parameters named "
                          "'*multi_scan.weights'): `localmamba search` needs a supernet such as "
                          "local_vim_tiny_search or local_vssm_tiny_search (and model.directions unset)")

    steps_per_epoch = train_loader.sampler.batches_per_epoch
    global_batch = t_cfg["batch_size"] * world
    lr = cfg["optim"]["lr"]
    if cfg["optim"]["lr_base_batch"]:
        lr = lr * global_batch / cfg["optim"]["lr_base_batch"]
    optimizer = build_optimizer(model, cfg, lr)
    scheduler = build_scheduler(optimizer, cfg, lr, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=(t_cfg["amp"] == "fp16"))
    ema = None
    if t_cfg["ema"]:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t_cfg["ema_decay"]), use_buffers=True)
    mixup = build_mixup(cfg, num_classes)
    if mixup is not None and t_cfg["batch_size"] % 2:
        raise ConfigError(f"mixup/cutmix need an even train.batch_size, got {t_cfg['batch_size']}")

    start_epoch, start_batch, global_step = 0, 0, 0
    best = {"acc1": -1.0, "epoch": -1}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema_state") is not None:
            ema.load_state_dict(ckpt["ema_state"])
        start_epoch, start_batch, global_step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["global_step"]
        if start_batch >= steps_per_epoch:
            start_epoch, start_batch = start_epoch + 1, 0
        best = ckpt.get("best", best)
        rng = ckpt.get("rng")
        if rng and len(rng) == world:
            set_rng_state(rng[rank])
        else:
            log(f"[resume] checkpoint RNG states are for {len(rng) if rng else 0} processes, this run has {world}; "
                "reseeding (the run continues, but not bit-identically)")
            torch.manual_seed(seed + rank + 7919 * global_step)
    else:
        torch.manual_seed(seed + rank)  # per-rank randomness (drop path, mixup) from here on
        import numpy as np
        import random

        np.random.seed((seed + rank) % 2**32)
        random.seed(seed + rank)

    train_model: torch.nn.Module = model
    if dist_info.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- output
    out_dir: Optional[Path] = None
    metrics: Optional[MetricsWriter] = None
    if is_main:
        if cfg["output"]["dir"]:
            out_dir = Path(os.path.expanduser(cfg["output"]["dir"]))
        else:
            out_dir = _default_output_dir(cfg, command)
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and (out_dir / "last.pt").exists():
            raise RuntimeError(f"{out_dir} already holds a run (last.pt); pass --resume {out_dir} to continue it, "
                               "or choose another --output")
        cfg["output"]["dir"] = str(out_dir)
        dump_config(cfg, out_dir / "config.yaml")
        metrics = MetricsWriter(out_dir / "metrics.jsonl", truncate_after_step=global_step if ckpt else None)
        if ckpt is None:
            metrics.write({"event": "start", "step": 0, "command": command, "model": cfg["model"]["name"],
                           "params": n_params, "world_size": world, "device": str(device),
                           "global_batch": global_batch, "lr": lr, "steps_per_epoch": steps_per_epoch})
    cfg["output"]["dir"] = D.broadcast_object(cfg["output"]["dir"])

    log(f"[{command}] model {cfg['model']['name']} ({n_params / 1e6:.3f}M params"
        f"{', search supernet' if is_search else ''}) | data {cfg['data']['dataset']} "
        f"({len(train_loader.dataset)} train / {len(val_loader.dataset)} val, {num_classes} classes, "
        f"{cfg['data']['img_size']}px) | {world} process(es) on {device} | global batch {global_batch}, "
        f"lr {lr:.3g}, {cfg['sched']['epochs']} epochs x {steps_per_epoch} steps | output {cfg['output']['dir']}")
    if ckpt is not None:
        log(f"[resume] from {resume}: epoch {start_epoch}, batch {start_batch}, step {global_step}")

    def save(epoch: int, batch_in_epoch: int, is_best: bool = False) -> None:
        rng = _gather_rng_states()  # collective: every rank calls save()
        if not is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": cfg,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "ema_state": ema.state_dict() if ema is not None else None,
            "model_ema": ema.module.state_dict() if ema is not None else None,
            "rng": rng,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "global_step": global_step,
            "best": best,
            "world_size": world,
        }
        atomic_torch_save(state, out_dir / "last.pt")
        if is_best:
            atomic_torch_save(state, out_dir / "best.pt")
            if cfg["output"]["safetensors"]:
                atomic_save_safetensors(model.state_dict(), out_dir / "model_best.safetensors",
                                        {"epoch": str(epoch), "acc1": f"{best['acc1']:.4f}"})

    progress = cfg["log"]["progress"] and is_main
    interval = cfg["log"]["interval"]
    amp = t_cfg["amp"]
    clip = cfg["optim"]["clip_grad"]
    epochs = cfg["sched"]["epochs"]
    stop_at = t_cfg["stop_after_steps"]
    ckpt_every = t_cfg["checkpoint_every_steps"]
    last_eval: Dict[str, Any] = {}
    stopped = False
    epochs_done = start_epoch
    t_start = time.time()
    train_model.train()

    for epoch in range(start_epoch, epochs):
        first_batch = start_batch if epoch == start_epoch else 0
        set_train_epoch(train_loader, epoch, first_batch)
        loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of batch losses, batches
        it = train_loader
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", initial=first_batch, total=steps_per_epoch,
                       leave=False, dynamic_ncols=True, file=sys.stderr)
            it = bar
        t_epoch = time.time()
        batch_in_epoch = first_batch
        for x, y in it:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if mixup is not None:
                x, target = mixup(x, y)
            else:
                target = y
            with autocast_context(device, amp):
                logits = train_model(x)
            logits = logits.float()
            if mixup is not None:
                loss = F.cross_entropy(logits, target)  # soft targets (smoothing inside mixup)
            else:
                loss = F.cross_entropy(logits, target, label_smoothing=cfg["aug"]["smoothing"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch}, step {global_step} "
                                         "(lower optim.lr, enable optim.clip_grad, or use train.amp=none)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            grad_norm = None
            if clip:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            global_step += 1
            batch_in_epoch += 1
            loss_sum += torch.tensor([loss.item(), 1.0], dtype=torch.float64)

            if global_step % interval == 0 or batch_in_epoch == steps_per_epoch:
                step_loss = float(D.all_reduce_sum(loss.detach().double().reshape(1)).item()) / world
                if metrics is not None:
                    rec = {"event": "step", "epoch": epoch, "step": global_step, "loss": step_loss,
                           "lr": optimizer.param_groups[0]["lr"], "time": round(time.time() - t_start, 3)}
                    if grad_norm is not None:
                        rec["grad_norm"] = grad_norm
                    metrics.write(rec)
                if bar is not None:
                    bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            stop_now = stop_at is not None and global_step >= stop_at
            if (ckpt_every and global_step % ckpt_every == 0 and batch_in_epoch < steps_per_epoch) or \
                    (stop_now and batch_in_epoch < steps_per_epoch):
                save(epoch, batch_in_epoch)
            if stop_now:
                stopped = True
                break
        if bar is not None:
            bar.close()
        if stopped and batch_in_epoch < steps_per_epoch:
            break

        # ---- end of epoch
        totals = D.all_reduce_sum(loss_sum)
        train_loss = float(totals[0] / max(1.0, float(totals[1])))
        record: Dict[str, Any] = {"event": "epoch", "epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
                                  "lr": optimizer.param_groups[0]["lr"], "epoch_time": round(time.time() - t_epoch, 3)}
        is_best = False
        if (epoch + 1) % t_cfg["eval_every"] == 0 or epoch + 1 == epochs:
            ev = evaluate(model, val_loader, device, amp, progress, "val")
            record.update(val_loss=ev["loss"], val_acc1=ev["acc1"], val_acc5=ev["acc5"])
            score = ev["acc1"]
            if ema is not None:
                ev_ema = evaluate(ema.module, val_loader, device, amp, progress, "val (EMA)")
                record.update(ema_loss=ev_ema["loss"], ema_acc1=ev_ema["acc1"], ema_acc5=ev_ema["acc5"])
                score = ev_ema["acc1"]
            if score > best["acc1"]:
                best = {"acc1": score, "epoch": epoch + 1}
                is_best = True
            last_eval = record
        if is_search:
            alphas = get_alphas(model)
            probs = alpha_probabilities(alphas)
            record["alpha"] = [[round(float(v), 6) for v in a.tolist()] for a in alphas.values()]
            record["alpha_prob"] = [[round(float(v), 6) for v in row] for row in probs.tolist()]
        log(_epoch_line(record, epochs, ema is not None))
        if is_main:
            metrics.write(record)  # before the checkpoint: a resume drops records newer than it
        save(epoch + 1, 0, is_best)
        epochs_done = epoch + 1
        if is_main:
            if cfg["output"]["plots"]:
                plot_curves(read_metrics(out_dir / "metrics.jsonl"), out_dir / "curves.png",
                            f"{cfg['model']['name']} on {cfg['data']['dataset']}")
                if is_search:
                    plot_alpha_heatmap(probs, out_dir / "alpha_heatmap.png",
                                       f"{cfg['model']['name']}: softmax(α), epoch {epoch + 1}",
                                       top_k=cfg["search"]["top_k"])
        if stopped:
            break

    summary: Dict[str, Any] = {"command": command, "model": cfg["model"]["name"], "output_dir": cfg["output"]["dir"],
                               "stopped_early": stopped, "global_step": global_step,
                               "epochs_done": epochs_done,
                               "train_time_s": round(time.time() - t_start, 3), "best": best}
    for k in ("val_loss", "val_acc1", "val_acc5", "ema_acc1", "ema_acc5"):
        if k in last_eval:
            summary[k] = last_eval[k]
    if is_main:
        if not stopped:
            if cfg["output"]["safetensors"]:
                atomic_save_safetensors(model.state_dict(), out_dir / "model.safetensors")
                if ema is not None:
                    atomic_save_safetensors(ema.module.state_dict(), out_dir / "model_ema.safetensors")
            if is_search:
                record = directions_record(get_alphas(model), cfg["search"]["top_k"], str(out_dir / "last.pt"),
                                           cfg["model"]["name"])
                write_directions(record, out_dir / "directions.json")
                summary["directions_file"] = str(out_dir / "directions.json")
        metrics.write({"event": "end", "step": global_step, **{k: v for k, v in summary.items() if k != "best"},
                       "best_acc1": best["acc1"], "best_epoch": best["epoch"]})
        metrics.close()
        atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        if stopped:
            log(f"[{command}] stopped after step {global_step} as requested (train.stop_after_steps); "
                f"continue with: localmamba {command} --resume {out_dir}")
        elif last_eval:
            acc = f"final validation accuracy: top-1 {last_eval['val_acc1']:.2f}%, top-5 {last_eval['val_acc5']:.2f}%"
            if "ema_acc1" in last_eval:
                acc += f" (EMA top-1 {last_eval['ema_acc1']:.2f}%)"
            log(f"[{command}] {acc} | best top-1 {best['acc1']:.2f}% at epoch {best['epoch']} | "
                f"{summary['train_time_s']:.1f}s | outputs in {out_dir}")
            if is_search:
                log(f"[{command}] searched directions written to {summary['directions_file']} "
                    f"(train with --directions {summary['directions_file']})")
    return summary


def _epoch_line(r: Dict[str, Any], epochs: int, has_ema: bool) -> str:
    s = f"epoch {r['epoch']}/{epochs}: train loss {r['train_loss']:.4f}"
    if "val_acc1" in r:
        s += f" | val loss {r['val_loss']:.4f}, top-1 {r['val_acc1']:.2f}%, top-5 {r['val_acc5']:.2f}%"
    if has_ema and "ema_acc1" in r:
        s += f" | EMA top-1 {r['ema_acc1']:.2f}%"
    s += f" | lr {r['lr']:.2e} | {r['epoch_time']:.1f}s"
    return s


# ----------------------------------------------------------------------------- evaluation

def run_evaluation(cfg: Dict[str, Any], checkpoint: str, ema: bool = False, user_config: bool = False,
                   args=None) -> Dict[str, Any]:
    """Evaluate a checkpoint on cfg's validation split. A localmamba training checkpoint
    supplies its own model and data config; flags given on the command line (`args`) still
    override it."""
    from ..data import build_datasets
    from ..data.loaders import build_eval_loader
    from .config import apply_overrides, validate_config

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
