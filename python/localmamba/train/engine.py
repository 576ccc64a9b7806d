"""The training loop behind `localmamba train` and `search`.

`run_training(cfg)` covers single-process CPU/GPU runs and DDP runs launched by torchrun, in
five steps (timm / nanoGPT style): `setup` builds a `Run` (data, model, optimizer, schedule,
EMA, restored state, output folder); `train_one_epoch` runs the optimizer steps of one epoch;
`end_epoch` evaluates, logs and checkpoints; `finalize` writes the final weights and summary.
`evaluate` (in `evaluation.py`) is the validation pass.

Files (rank 0 only) in the output directory:

    config.yaml          the resolved configuration
    metrics.jsonl        one JSON object per line: {"event": "step"|"epoch"|"end", ...}
    curves.png           loss and accuracy curves
    last.pt / best.pt    full training state (atomic writes), resumable with --resume
    model.safetensors    final weights (and model_ema.safetensors, model_best.safetensors)
    summary.json         final metrics
    search runs also:    alpha_heatmap.png (per-layer direction probabilities), directions.json
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..data import build_loaders, build_mixup, record_dataset_fields, set_train_epoch
from ..search import alpha_probabilities, directions_record, get_alphas, plot_alpha_heatmap, write_directions
from . import distributed as D
from .checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_bytes,
    get_rng_state,
    load_training_checkpoint,
    set_rng_state,
)
from .config import ConfigError, dump_config
from .evaluation import autocast_context, evaluate, run_evaluation
from .metrics import MetricsWriter, plot_curves, read_metrics
from .modeling import build_model, load_pretrained, resolve_directions
from .optim import build_optimizer, build_scheduler
from .outputs import check_output_dir, repair_best_files, weights_metadata

__all__ = [
    "CHECKPOINT_FORMAT",
    "Run",
    "autocast_context",
    "build_model",
    "end_epoch",
    "evaluate",
    "finalize",
    "load_pretrained",
    "resolve_directions",
    "run_evaluation",
    "run_training",
    "save_checkpoint",
    "setup",
    "train_one_epoch",
]


@dataclass
class Run:
    """Everything one training run holds between steps."""

    cfg: Dict[str, Any]
    command: str
    dist: D.DistInfo
    device: torch.device
    log: Callable[..., None]
    train_loader: Any = None
    val_loader: Any = None
    num_classes: int = 0
    model: Optional[torch.nn.Module] = None
    train_model: Optional[torch.nn.Module] = None  # the DDP wrapper, or the model itself
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    ema: Any = None
    mixup: Any = None
    is_search: bool = False
    n_params: int = 0
    steps_per_epoch: int = 0
    global_batch: int = 0
    lr: float = 0.0
    start_epoch: int = 0
    start_batch: int = 0
    global_step: int = 0
    resumed_epoch_loss: Optional[torch.Tensor] = None  # (loss sum, batches) before the resume point
    best: Dict[str, Any] = field(default_factory=lambda: {"acc1": -1.0, "epoch": -1})
    out_dir: Optional[Path] = None
    metrics: Optional[MetricsWriter] = None
    last_eval: Dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    epochs_done: int = 0
    t_start: float = 0.0

    @property
    def is_main(self) -> bool:
        return self.dist.is_main


# ----------------------------------------------------------------------------- setup

def setup(cfg: Dict[str, Any], command: str, resume: Optional[str], dist_info: D.DistInfo,
          device: torch.device) -> Run:
    """Builds the run; on resume, the run's own config and state from its checkpoint."""
    if cfg["train"]["threads"]:
        torch.set_num_threads(cfg["train"]["threads"])
    if cfg["train"]["amp"] == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16")
    ckpt = None
    if resume:
        cfg, ckpt = _resume_config(cfg, resume)
    elif dist_info.is_main:
        check_output_dir(cfg["output"]["dir"], "--output")
    log = (lambda *a: print(*a, flush=True)) if dist_info.is_main else (lambda *a: None)
    run = Run(cfg=cfg, command=command, dist=dist_info, device=device, log=log)
    # directions file -> explicit lists, so the run's config is self-contained
    cfg["model"]["directions"] = resolve_directions(cfg["model"]["directions"])
    torch.manual_seed(cfg["train"]["seed"])  # identical model init on every rank
    _build_data(run)
    _build_model(run)
    _build_optimization(run)
    if ckpt is not None:
        _restore_state(run, ckpt)
    else:
        _seed_per_rank(cfg["train"]["seed"] + dist_info.rank)
    run.train_model = run.model
    if dist_info.distributed:
        run.train_model = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None)
    _open_output(run, ckpt)
    _log_start(run, resume if ckpt is not None else None)
    return run


def _resume_config(cfg: Dict[str, Any], resume: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The resumed run continues with its own configuration (log settings included), in its own
    directory; only the device, data location / workers, progress bars and stop step may change."""
    ckpt = load_training_checkpoint(resume)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"--resume {resume}: not a localmamba training checkpoint (no resumable state); "
                          "use model.pretrained (--pretrained) to initialise from weights instead")
    saved = ckpt["config"]
    saved["log"]["progress"] = cfg["log"]["progress"]
    saved["output"]["dir"] = str(Path(resume) if Path(resume).is_dir() else Path(resume).parent)
    saved["train"]["stop_after_steps"] = cfg["train"]["stop_after_steps"]
    saved["train"]["device"] = cfg["train"]["device"]
    saved["data"]["workers"] = cfg["data"]["workers"]
    saved["data"]["root"] = cfg["data"]["root"] or saved["data"]["root"]
    return saved, ckpt


def _build_data(run: Run) -> None:
    cfg = run.cfg
    run.train_loader, run.val_loader, info = build_loaders(cfg, run.dist.rank, run.dist.world_size, run.device)
    # recorded as used, so the run's config alone rebuilds the model and prepares inputs (eval, predict)
    record_dataset_fields(cfg["data"], info)
    if cfg["data"]["num_classes"] < info["num_classes"]:
        raise ConfigError(f"data.num_classes={cfg['data']['num_classes']} but the dataset has "
                          f"{info['num_classes']} classes")
    if cfg["data"]["in_chans"] != info["in_chans"]:
        raise ConfigError(f"data.in_chans={cfg['data']['in_chans']} but the dataset's images have "
                          f"{info['in_chans']} channels")
    run.num_classes = cfg["data"]["num_classes"]
    run.steps_per_epoch = run.train_loader.sampler.batches_per_epoch


def _build_model(run: Run) -> None:
    cfg = run.cfg
    run.model = build_model(cfg, cfg["data"]["num_classes"], cfg["data"]["in_chans"]).to(run.device)
    run.n_params = sum(p.numel() for p in run.model.parameters())
    run.is_search = bool(get_alphas(run.model))
    if run.command == "search" and not run.is_search:
        raise ConfigError(f"model {cfg['model']['name']!r} has no direction logits (parameters named "
                          "'*multi_scan.weights'): `localmamba search` needs a supernet such as "
                          "local_vim_tiny_search or local_vssm_tiny_search (and model.directions unset)")


def _build_optimization(run: Run) -> None:
    cfg, t_cfg = run.cfg, run.cfg["train"]
    run.global_batch = t_cfg["batch_size"] * run.dist.world_size
    run.lr = cfg["optim"]["lr"]
    if cfg["optim"]["lr_base_batch"]:
        run.lr = run.lr * run.global_batch / cfg["optim"]["lr_base_batch"]
    run.optimizer = build_optimizer(run.model, cfg, run.lr)
    run.scheduler = build_scheduler(run.optimizer, cfg, run.lr, run.steps_per_epoch)
    run.scaler = torch.amp.GradScaler("cuda", enabled=(t_cfg["amp"] == "fp16"))
    if t_cfg["ema"]:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        run.ema = AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(t_cfg["ema_decay"]), use_buffers=True)
    run.mixup = build_mixup(cfg, run.num_classes)
    if run.mixup is not None and t_cfg["batch_size"] % 2:
        raise ConfigError(f"mixup/cutmix need an even train.batch_size, got {t_cfg['batch_size']}")


def _seed_per_rank(seed: int) -> None:
    """Per-rank randomness (drop path, mixup) from here on."""
    import random

    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _restore_state(run: Run, ckpt: Dict[str, Any]) -> None:
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None and ckpt.get("ema_state") is not None:
        run.ema.load_state_dict(ckpt["ema_state"])
    run.start_epoch, run.start_batch, run.global_step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["global_step"]
    if run.start_batch >= run.steps_per_epoch:
        run.start_epoch, run.start_batch = run.start_epoch + 1, 0
    elif run.start_batch > 0:
        run.resumed_epoch_loss = _rank_share(ckpt.get("epoch_loss"), run.dist.rank, run.dist.world_size)
    run.best = ckpt.get("best", run.best)
    rank, world = run.dist.rank, run.dist.world_size
    rng = ckpt.get("rng")
    if rng and len(rng) == world:
        set_rng_state(rng[rank])
    else:
        run.log(f"[resume] checkpoint RNG states are for {len(rng) if rng else 0} processes, this run has {world}; "
                "reseeding (the run continues, but not bit-identically)")
        torch.manual_seed(run.cfg["train"]["seed"] + rank + 7919 * run.global_step)


def _rank_share(per_rank: Optional[List[torch.Tensor]], rank: int, world: int) -> Optional[torch.Tensor]:
    """This rank's part of the epoch's running loss sums saved by every rank: its own when the
    world size is unchanged, else rank 0 carries the total (the epoch mean stays exact)."""
    if not per_rank:
        return None
    if len(per_rank) == world:
        return per_rank[rank].clone()
    return torch.stack(per_rank).sum(0) if rank == 0 else torch.zeros(2, dtype=torch.float64)


def _open_output(run: Run, ckpt: Optional[Dict[str, Any]]) -> None:
    cfg = run.cfg
    if run.is_main:
        out_dir = Path(os.path.expanduser(cfg["output"]["dir"])) if cfg["output"]["dir"] \
            else default_output_dir(cfg, run.command)
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and (out_dir / "last.pt").exists():  # a default folder, or a race with another run
            raise ConfigError(f"--output {out_dir}: already holds a run (last.pt); pass --resume {out_dir} "
                              "to continue it, or choose another --output")
        if ckpt is not None:
            repair_best_files(out_dir, ckpt, cfg["output"]["safetensors"], weights_metadata(cfg))
        cfg["output"]["dir"] = str(out_dir)
        dump_config(cfg, out_dir / "config.yaml")
        run.out_dir = out_dir
        run.metrics = MetricsWriter(out_dir / "metrics.jsonl", truncate_after_step=run.global_step if ckpt else None)
        if ckpt is None:
            run.metrics.write({"event": "start", "step": 0, "command": run.command, "model": cfg["model"]["name"],
                               "params": run.n_params, "world_size": run.dist.world_size, "device": str(run.device),
                               "global_batch": run.global_batch, "lr": run.lr, "steps_per_epoch": run.steps_per_epoch})
    cfg["output"]["dir"] = D.broadcast_object(cfg["output"]["dir"])


def default_output_dir(cfg: Dict[str, Any], command: str) -> Path:
    """runs/<command>-<model>-<dataset>-<YYYYmmdd-HHMMSS>"""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = cfg["model"]["name"].replace(":", "_").replace("/", "_").replace(".", "_")
    return Path("runs") / f"{command}-{name}-{cfg['data']['dataset']}-{stamp}"


def _log_start(run: Run, resumed_from: Optional[str]) -> None:
    cfg = run.cfg
    run.log(f"[{run.command}] model {cfg['model']['name']} ({run.n_params / 1e6:.3f}M params"
            f"{', search supernet' if run.is_search else ''}) | data {cfg['data']['dataset']} "
            f"({len(run.train_loader.dataset)} train / {len(run.val_loader.dataset)} val, {run.num_classes} classes, "
            f"{cfg['data']['img_size']}px) | {run.dist.world_size} process(es) on {run.device} | global batch "
            f"{run.global_batch}, lr {run.lr:.3g}, {cfg['sched']['epochs']} epochs x {run.steps_per_epoch} steps | "
            f"output {cfg['output']['dir']}")
    if resumed_from is not None:
        run.log(f"[resume] from {resumed_from}: epoch {run.start_epoch}, batch {run.start_batch}, "
                f"step {run.global_step}")


# ----------------------------------------------------------------------------- checkpoints

def _gather_per_rank(value: Any) -> List[Any]:
    if not D._active():
        return [value]
    out: List[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def save_checkpoint(run: Run, epoch: int, batch_in_epoch: int, is_best: bool = False,
                    epoch_loss: Optional[torch.Tensor] = None) -> None:
    """last.pt (and best.pt / model_best.safetensors). Collective: every rank calls it."""
    rng = _gather_per_rank(get_rng_state())
    losses = _gather_per_rank(epoch_loss) if epoch_loss is not None else None
    if not run.is_main:
        return
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": run.cfg,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "ema_state": run.ema.state_dict() if run.ema is not None else None,
        "model_ema": run.ema.module.state_dict() if run.ema is not None else None,
        "rng": rng,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "global_step": run.global_step,
        "epoch_loss": losses,  # per rank (loss sum, batches) so far in a partly done epoch
        "best": run.best,
        "world_size": run.dist.world_size,
    }
    atomic_torch_save(state, run.out_dir / "last.pt")
    if is_best:
        atomic_torch_save(state, run.out_dir / "best.pt")
        if run.cfg["output"]["safetensors"]:
            atomic_save_safetensors(run.model.state_dict(), run.out_dir / "model_best.safetensors",
                                    weights_metadata(run.cfg, epoch=epoch, acc1=run.best["acc1"]))


# ----------------------------------------------------------------------------- one epoch

def _train_step(run: Run, x: torch.Tensor, y: torch.Tensor, epoch: int) -> Tuple[torch.Tensor, Optional[float]]:
    """Forward, backward, optimizer / schedule / EMA step. Returns the loss and the grad norm."""
    x = x.to(run.device, non_blocking=True)
    y = y.to(run.device, non_blocking=True)
    target = y
    if run.mixup is not None:
        x, target = run.mixup(x, y)
    with autocast_context(run.device, run.cfg["train"]["amp"]):
        logits = run.train_model(x)
    logits = logits.float()
    if run.mixup is not None:
        loss = F.cross_entropy(logits, target)  # soft targets (smoothing inside mixup)
    else:
        loss = F.cross_entropy(logits, target, label_smoothing=run.cfg["aug"]["smoothing"])
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss {loss.item()} at epoch {epoch}, step {run.global_step} "
                                 "(lower optim.lr, enable optim.clip_grad, or use train.amp=none)")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    grad_norm = None
    clip = run.cfg["optim"]["clip_grad"]
    if clip:
        run.scaler.unscale_(run.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip))
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.global_step += 1
    return loss, grad_norm


def _log_step(run: Run, epoch: int, loss: torch.Tensor, grad_norm: Optional[float], bar) -> None:
    step_loss = float(D.all_reduce_sum(loss.detach().double().reshape(1)).item()) / run.dist.world_size
    lr = run.optimizer.param_groups[0]["lr"]
    if run.metrics is not None:
        rec = {"event": "step", "epoch": epoch, "step": run.global_step, "loss": step_loss, "lr": lr,
               "time": round(time.time() - run.t_start, 3)}
        if grad_norm is not None:
            rec["grad_norm"] = grad_norm
        run.metrics.write(rec)
    if bar is not None:
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")


def train_one_epoch(run: Run, epoch: int) -> Tuple[torch.Tensor, bool]:
    """The epoch's optimizer steps (from the resume point when resuming into it). Returns this
    rank's (loss sum, batches) over the whole epoch and whether the epoch ran to its end."""
    resuming = epoch == run.start_epoch and run.start_batch > 0
    first_batch = run.start_batch if resuming else 0
    set_train_epoch(run.train_loader, epoch, first_batch)
    loss_sum = torch.zeros(2, dtype=torch.float64)  # sum of batch losses, batches
    if resuming and run.resumed_epoch_loss is not None:
        loss_sum += run.resumed_epoch_loss
    it = bar = None
    if run.cfg["log"]["progress"] and run.is_main:
        from tqdm import tqdm

        it = bar = tqdm(run.train_loader, desc=f"epoch {epoch + 1}/{run.cfg['sched']['epochs']}", initial=first_batch,
                        total=run.steps_per_epoch, leave=False, dynamic_ncols=True, file=sys.stderr)
    stop_at, ckpt_every = run.cfg["train"]["stop_after_steps"], run.cfg["train"]["checkpoint_every_steps"]
    batch_in_epoch = first_batch
    for x, y in it if it is not None else run.train_loader:
        loss, grad_norm = _train_step(run, x, y, epoch)
        batch_in_epoch += 1
        loss_sum += torch.tensor([loss.item(), 1.0], dtype=torch.float64)
        if run.global_step % run.cfg["log"]["interval"] == 0 or batch_in_epoch == run.steps_per_epoch:
            _log_step(run, epoch, loss, grad_norm, bar)
        stop_now = stop_at is not None and run.global_step >= stop_at
        mid_epoch = batch_in_epoch < run.steps_per_epoch
        if mid_epoch and (stop_now or (ckpt_every and run.global_step % ckpt_every == 0)):
            save_checkpoint(run, epoch, batch_in_epoch, epoch_loss=loss_sum)
        if stop_now:
            run.stopped = True
            break
    if bar is not None:
        bar.close()
    return loss_sum, batch_in_epoch >= run.steps_per_epoch


# ----------------------------------------------------------------------------- end of epoch

def _validate(run: Run, record: Dict[str, Any], epoch: int) -> bool:
    """Validation (and EMA validation) into `record`; returns whether this is the best epoch."""
    amp, progress = run.cfg["train"]["amp"], run.cfg["log"]["progress"] and run.is_main
    ev = evaluate(run.model, run.val_loader, run.device, amp, progress, "val")
    record.update(val_loss=ev["loss"], val_acc1=ev["acc1"], val_acc5=ev["acc5"])
    score = ev["acc1"]
    if run.ema is not None:
        ev_ema = evaluate(run.ema.module, run.val_loader, run.device, amp, progress, "val (EMA)")
        record.update(ema_loss=ev_ema["loss"], ema_acc1=ev_ema["acc1"], ema_acc5=ev_ema["acc5"])
        score = ev_ema["acc1"]
    run.last_eval = record
    if score > run.best["acc1"]:
        run.best = {"acc1": score, "epoch": epoch + 1}
        return True
    return False


def end_epoch(run: Run, epoch: int, loss_sum: torch.Tensor, epoch_time: float) -> None:
    """Epoch record (train loss over the whole epoch, validation, α for a search), checkpoint, plots."""
    cfg = run.cfg
    epochs = cfg["sched"]["epochs"]
    totals = D.all_reduce_sum(loss_sum)
    record: Dict[str, Any] = {"event": "epoch", "epoch": epoch + 1, "step": run.global_step,
                              "train_loss": float(totals[0] / max(1.0, float(totals[1]))),
                              "lr": run.optimizer.param_groups[0]["lr"], "epoch_time": round(epoch_time, 3)}
    is_best = False
    if (epoch + 1) % cfg["train"]["eval_every"] == 0 or epoch + 1 == epochs:
        is_best = _validate(run, record, epoch)
    probs = None
    if run.is_search:
        alphas = get_alphas(run.model)
        probs = alpha_probabilities(alphas)
        record["alpha"] = [[round(float(v), 6) for v in a.tolist()] for a in alphas.values()]
        record["alpha_prob"] = [[round(float(v), 6) for v in row] for row in probs.tolist()]
    run.log(_epoch_line(record, epochs, run.ema is not None))
    if run.is_main:
        run.metrics.write(record)  # before the checkpoint: a resume drops records newer than it
    save_checkpoint(run, epoch + 1, 0, is_best)
    run.epochs_done = epoch + 1
    if run.is_main and cfg["output"]["plots"]:
        title = f"{cfg['model']['name']} on {cfg['data']['dataset']}"
        plot_curves(read_metrics(run.out_dir / "metrics.jsonl"), run.out_dir / "curves.png", title)
        if probs is not None:
            plot_alpha_heatmap(probs, run.out_dir / "alpha_heatmap.png",
                               f"{cfg['model']['name']}: softmax(α), epoch {epoch + 1}", top_k=cfg["search"]["top_k"])


def _epoch_line(r: Dict[str, Any], epochs: int, has_ema: bool) -> str:
    s = f"epoch {r['epoch']}/{epochs}: train loss {r['train_loss']:.4f}"
    if "val_acc1" in r:
        s += f" | val loss {r['val_loss']:.4f}, top-1 {r['val_acc1']:.2f}%, top-5 {r['val_acc5']:.2f}%"
    if has_ema and "ema_acc1" in r:
        s += f" | EMA top-1 {r['ema_acc1']:.2f}%"
    s += f" | lr {r['lr']:.2e} | {r['epoch_time']:.1f}s"
    return s


# ----------------------------------------------------------------------------- finish

def finalize(run: Run) -> Dict[str, Any]:
    """Final weights, directions file (search), end record and summary.json. Returns the summary."""
    cfg, best = run.cfg, run.best
    summary: Dict[str, Any] = {"command": run.command, "model": cfg["model"]["name"], "output_dir": cfg["output"]["dir"],
                               "stopped_early": run.stopped, "global_step": run.global_step,
                               "epochs_done": run.epochs_done, "train_time_s": round(time.time() - run.t_start, 3),
                               "best": best}
    for k in ("val_loss", "val_acc1", "val_acc5", "ema_acc1", "ema_acc5"):
        if k in run.last_eval:
            summary[k] = run.last_eval[k]
    if not run.is_main:
        return summary
    out_dir = run.out_dir
    if not run.stopped:
        _write_final_weights(run, summary)
    run.metrics.write({"event": "end", "step": run.global_step, **{k: v for k, v in summary.items() if k != "best"},
                       "best_acc1": best["acc1"], "best_epoch": best["epoch"]})
    run.metrics.close()
    atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    _log_end(run, summary)
    return summary


def _write_final_weights(run: Run, summary: Dict[str, Any]) -> None:
    cfg, out_dir = run.cfg, run.out_dir
    if cfg["output"]["safetensors"]:
        meta = weights_metadata(cfg, epoch=run.epochs_done)
        atomic_save_safetensors(run.model.state_dict(), out_dir / "model.safetensors", meta)
        if run.ema is not None:
            atomic_save_safetensors(run.ema.module.state_dict(), out_dir / "model_ema.safetensors", meta)
    if run.is_search:
        record = directions_record(get_alphas(run.model), cfg["search"]["top_k"], str(out_dir / "last.pt"),
                                   cfg["model"]["name"])
        write_directions(record, out_dir / "directions.json")
        summary["directions_file"] = str(out_dir / "directions.json")


def _log_end(run: Run, summary: Dict[str, Any]) -> None:
    command, out_dir, last, best = run.command, run.out_dir, run.last_eval, run.best
    if run.stopped:
        run.log(f"[{command}] stopped after step {run.global_step} as requested (train.stop_after_steps); "
                f"continue with: localmamba {command} --resume {out_dir}")
    elif last:
        acc = f"final validation accuracy: top-1 {last['val_acc1']:.2f}%, top-5 {last['val_acc5']:.2f}%"
        if "ema_acc1" in last:
            acc += f" (EMA top-1 {last['ema_acc1']:.2f}%)"
        run.log(f"[{command}] {acc} | best top-1 {best['acc1']:.2f}% at epoch {best['epoch']} | "
                f"{summary['train_time_s']:.1f}s | outputs in {out_dir}")
        if run.is_search:
            run.log(f"[{command}] searched directions written to {summary['directions_file']} "
                    f"(train with --directions {summary['directions_file']})")


# ----------------------------------------------------------------------------- driver

def run_training(cfg: Dict[str, Any], command: str = "train", resume: Optional[str] = None) -> Dict[str, Any]:
    """Train (or, for a supernet, search) as configured. Returns the summary dict."""
    dist_info, device = D.init_distributed(cfg["train"]["device"])
    try:
        run = setup(cfg, command, resume, dist_info, device)
        run.epochs_done = run.start_epoch
        run.t_start = time.time()
        run.train_model.train()
        for epoch in range(run.start_epoch, run.cfg["sched"]["epochs"]):
            t_epoch = time.time()
            loss_sum, completed = train_one_epoch(run, epoch)
            if not completed:
                break
            end_epoch(run, epoch, loss_sum, time.time() - t_epoch)
            if run.stopped:
                break
        return finalize(run)
    finally:
        D.cleanup_distributed()
