"""The run folder: checking `--output` before a run starts, the architecture record written
into weights files, and putting best.pt / model_best.safetensors right after an interrupted
write (on resume)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from ..atomic_files import atomic_save_safetensors, atomic_torch_save, remove_stale_temps
from .config import ConfigError

__all__ = ["WEIGHTS_FORMAT", "check_output_dir", "weights_metadata", "architecture_from_metadata",
           "repair_best_files"]

#: The "format" metadata entry of a .safetensors weights file written by training.
WEIGHTS_FORMAT = "localmamba-weights/1"


def check_output_dir(path: Optional[str], flag: str = "--output") -> None:
    """Fails early, naming `flag`, when the run folder cannot be used: it is (or lies under) a
    file, cannot be created or written, or already holds a run."""
    if not path:
        return  # a fresh timestamped folder under runs/
    p = Path(os.path.expanduser(str(path)))
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {p}: is a file, not a folder; choose a folder path")
    if (p / "last.pt").exists():
        raise ConfigError(f"{flag} {p}: already holds a run (last.pt); pass --resume {p} to continue it, "
                          "or choose another --output")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{flag} {p}: cannot create or write this folder ({reason}); "
                          "choose a writable folder") from None


def weights_metadata(cfg: Mapping[str, Any], **extra: Any) -> Dict[str, str]:
    """safetensors metadata recording the architecture (model name, kwargs, per-layer directions,
    input size, channels, classes) and the input normalisation, so the weights alone rebuild
    their model and prepare its inputs."""
    arch = {
        "model": {"name": cfg["model"]["name"], "kwargs": cfg["model"]["kwargs"],
                  "directions": cfg["model"]["directions"]},
        "data": {k: cfg["data"][k] for k in ("img_size", "in_chans", "num_classes", "mean", "std", "crop_pct",
                                             "interpolation")},
    }
    meta = {"format": WEIGHTS_FORMAT, "architecture": json.dumps(arch, sort_keys=True)}
    for key, value in extra.items():
        meta[key] = f"{value:.4f}" if isinstance(value, float) else str(value)
    return meta


def architecture_from_metadata(meta: Optional[Mapping[str, str]]) -> Optional[Dict[str, Any]]:
    """{"model": {...}, "data": {...}} recorded by `weights_metadata`, or None."""
    if not meta or meta.get("format") != WEIGHTS_FORMAT or "architecture" not in meta:
        return None
    return json.loads(meta["architecture"])


def _safetensors_epoch(path: Path) -> Optional[str]:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("epoch")
    except Exception:  # a torn or foreign file counts as stale
        return None


def _checkpoint_field(path: Path, key: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get(key)
    except Exception:
        return None


def repair_best_files(out_dir: Path, ckpt: Mapping[str, Any], write_safetensors: bool,
                      metadata: Dict[str, str]) -> List[str]:
    """On resume: removes temporary files of interrupted writes, and rewrites best.pt /
    model_best.safetensors when a kill left them older than the best epoch that last.pt
    records. Returns the names of the files rewritten."""
    remove_stale_temps(out_dir)
    best = ckpt.get("best") or {}
    epoch = best.get("epoch", -1)
    if epoch < 1:
        return []
    repaired: List[str] = []
    best_state = None
    if ckpt["epoch"] == epoch and ckpt["batch_in_epoch"] == 0:  # last.pt is the best state itself
        best_state = ckpt
        if _checkpoint_field(out_dir / "best.pt", "global_step") != ckpt["global_step"]:
            atomic_torch_save(dict(ckpt), out_dir / "best.pt")
            repaired.append("best.pt")
    if write_safetensors and _safetensors_epoch(out_dir / "model_best.safetensors") != str(epoch):
        if best_state is None and (out_dir / "best.pt").is_file():
            state = torch.load(out_dir / "best.pt", map_location="cpu", weights_only=True)
            best_state = state if state.get("epoch") == epoch else None
        if best_state is not None:
            meta = {**metadata, "epoch": str(epoch), "acc1": f"{best['acc1']:.4f}"}
            atomic_save_safetensors(best_state["model"], out_dir / "model_best.safetensors", meta)
            repaired.append("model_best.safetensors")
    return repaired
