"""Reading back what a run wrote, for `eval`, `predict` and `export-directions`: a run folder,
last.pt / best.pt, a .safetensors weights file (its architecture in the metadata, or the run's
config.yaml beside it), or a foreign checkpoint (an official release .pth). Every failure is a
`UserError` naming the argument and what to do."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from ..errors import UserError
from .checkpoint import CHECKPOINT_FORMAT, extract_state_dict, unreadable_reason
from .outputs import architecture_from_metadata

__all__ = ["RunCheckpoint", "open_checkpoint", "load_weights", "check_architecture", "ARCHITECTURE_KEYS"]

#: Config keys that decide the shapes and wiring of the weights.
ARCHITECTURE_KEYS = (("model", "name"), ("model", "kwargs"), ("model", "directions"))

_RUN_FILES = ("last.pt", "best.pt", "model.safetensors")


@dataclass
class RunCheckpoint:
    path: Path
    flag: str  # the command-line argument it came from, for messages
    state_dict: Dict[str, torch.Tensor]
    config: Optional[Dict[str, Any]]  # the run's full config (training checkpoint or config.yaml beside)
    architecture: Optional[Dict[str, Any]]  # {"model": ..., "data": ...} recorded in the weights
    foreign: bool  # not written by localmamba train (e.g. an official release checkpoint)
    ema: bool = False  # the EMA weights were asked for

    @property
    def recorded(self) -> Optional[Dict[str, Any]]:
        """The architecture this checkpoint records, from its config or its metadata."""
        return self.config if self.config is not None else self.architecture


def _resolve(path: str, flag: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        for name in _RUN_FILES:
            if (p / name).is_file():
                return p / name
        raise UserError(f"{flag} {p}: the folder holds no checkpoint ({', '.join(_RUN_FILES)}); "
                        "give a run folder written by `localmamba train` or a weights file")
    if not p.is_file():
        raise UserError(f"{flag} {p}: not found; give a run folder or a checkpoint file")
    return p


def _config_beside(path: Path) -> Optional[Dict[str, Any]]:
    cfg_file = path.parent / "config.yaml"
    if not cfg_file.is_file():
        return None
    import yaml

    try:
        cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    return cfg if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) else None


def _open_safetensors(p: Path, flag: str) -> RunCheckpoint:
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"{flag} {p}: not a readable .safetensors file ({_short(e)})") from None
    arch = architecture_from_metadata(meta)
    config = _config_beside(p)
    if config is not None and arch is not None and _arch_diff(arch, config):
        config = None  # a config.yaml of another run: trust the weights' own record
    return RunCheckpoint(p, flag, sd, config, arch, foreign=arch is None and config is None)


def open_checkpoint(path: str, flag: str, prefer_ema: bool = False) -> RunCheckpoint:
    """The weights (EMA ones with prefer_ema) and whatever architecture record they carry."""
    p = _resolve(path, flag)
    if p.suffix == ".safetensors":
        if prefer_ema:
            ema = p.with_name("model_ema.safetensors")
            if p.name != "model.safetensors" or not ema.is_file():
                raise UserError(f"--ema: {p} holds no EMA weights; give the run folder or model_ema.safetensors "
                                "of a run trained with train.ema=true")
            p = ema
        ck = _open_safetensors(p, flag)
        ck.ema = prefer_ema
        return ck
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # text, random bytes, a truncated file, a pickle of arbitrary objects
        raise UserError(f"{flag} {p}: not a checkpoint this can read ({unreadable_reason(p, e)}); give a run folder, "
                        "last.pt / best.pt, a .pth state dict or a .safetensors file") from None
    ours = isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT
    if prefer_ema and not (isinstance(obj, dict) and isinstance(obj.get("model_ema") or obj.get("state_dict_ema"),
                                                                 dict)):
        raise UserError(f"--ema: {p} holds no EMA weights (the run was trained without train.ema=true); "
                        "drop --ema")
    try:
        sd = extract_state_dict(obj, prefer_ema=prefer_ema)
    except RuntimeError:
        raise UserError(f"{flag} {p}: holds no model weights (expected a state dict, possibly under 'model' "
                        "or 'state_dict')") from None
    config = copy.deepcopy(obj["config"]) if ours else None
    return RunCheckpoint(p, flag, sd, config, None, foreign=not ours, ema=prefer_ema)


def _short(e: BaseException, limit: int = 120) -> str:
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _canonical(key, value):
    if key == ("model", "directions") and value is not None:
        from .modeling import resolve_directions

        return resolve_directions(value)
    if key == ("model", "kwargs"):
        return dict(value or {})
    return value


def _arch_diff(recorded: Mapping[str, Any], cfg: Mapping[str, Any]) -> List[str]:
    out = []
    for key in ARCHITECTURE_KEYS:
        want = _canonical(key, recorded.get(key[0], {}).get(key[1]))
        got = _canonical(key, cfg.get(key[0], {}).get(key[1]))
        if want != got:
            out.append(f"{'.'.join(key)}: the checkpoint was trained with {want!r}, not {got!r}")
    return out


def check_architecture(ck: RunCheckpoint, cfg: Mapping[str, Any]) -> None:
    """The model about to be built must be the one the weights were trained as."""
    recorded = ck.recorded
    if recorded is None:
        return
    diff = _arch_diff(recorded, cfg)
    if diff:
        raise UserError(f"{ck.flag} {ck.path}: {diff[0]}; drop the option that changes it (the checkpoint "
                        "rebuilds its own model)")


def load_weights(model: torch.nn.Module, ck: RunCheckpoint, model_name: str) -> None:
    """Strict load; a mismatch names the first few differing keys instead of the whole dump.
    Foreign checkpoints go through the models' converter (official release layouts) first."""
    if ck.foreign:
        try:
            from ..models import load_checkpoint

            load_checkpoint(model, str(ck.path), prefer_ema=ck.ema)
            return
        except (ValueError, RuntimeError, KeyError, ImportError):
            pass  # explained below from the raw state dict
    own = model.state_dict()
    sd = ck.state_dict
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        model.load_state_dict(sd, strict=True)
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("with other shapes", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    raise UserError(f"{ck.flag} {ck.path}: the weights do not fit model {model_name!r}: {'; '.join(parts)}; "
                    "pass the model (and sizes) it was trained with, or give its run folder")
