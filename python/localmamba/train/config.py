"""Training configuration: nested defaults, YAML files (with `_base_` inheritance),
dotted command-line overrides, and validation with clear error messages.

A config is a plain nested dict. `load_config(path_or_name, overrides)` returns a fully
populated, validated dict; unknown keys are errors (with a "did you mean" hint).
Packaged recipes live in `localmamba/configs/` and can be named without the `.yaml`
suffix, e.g. `imagenet/local_vim_tiny` or `search/local_vim_tiny_search`.
"""
from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import yaml

__all__ = [
    "DEFAULTS",
    "ConfigError",
    "CONFIG_DIR",
    "default_config",
    "list_configs",
    "load_config",
    "apply_overrides",
    "resolve_config_path",
    "validate_config",
    "dump_config",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad configuration value or key."""


#: Every key a config may contain, with its default. `None` means "unset / automatic".
DEFAULTS: Dict[str, Any] = {
    "model": {
        # A registered model name (see `localmamba.list_models()`), or "package.module:callable"
        # for a user model accepting the same keyword arguments.
        "name": "local_vim_tiny",
        "kwargs": {},  # extra constructor arguments (embed_dim, depth, patch_size, ...)
        "drop_path": 0.1,
        # Per-layer scan directions: a list of lists of names, or a path to a directions file
        # written by `localmamba export-directions`. None keeps the model's own directions.
        "directions": None,
        "pretrained": None,  # checkpoint whose weights initialise the model (not a resume)
    },
    "data": {
        "dataset": "digits",  # digits | imagefolder | cifar10 | cifar100
        "root": None,
        "train_split": "train",
        "val_split": "val",
        "img_size": 224,
        "in_chans": None,  # automatic from the dataset
        "num_classes": None,  # automatic from the dataset
        "mean": None,  # automatic from the dataset
        "std": None,
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "workers": 4,
        "pin_memory": True,
        "val_fraction": 0.2,  # held-out fraction for datasets without a validation split (digits)
        "limit_train": None,  # use only the first N training samples (debugging, tests)
        "limit_val": None,
    },
    "aug": {
        "scale": [0.08, 1.0],  # RandomResizedCrop scale (imagefolder)
        "hflip": 0.5,
        "random_crop_padding": None,  # small-image datasets: pad-and-crop (None: img_size // 8)
        "auto_augment": None,  # e.g. "rand-m9-mstd0.5-inc1" (timm RandAugment)
        "color_jitter": 0.0,
        "reprob": 0.0,  # random erasing probability
        "remode": "pixel",
        "recount": 1,
        "mixup": 0.0,
        "cutmix": 0.0,
        "mixup_prob": 1.0,
        "mixup_switch_prob": 0.5,
        "mixup_mode": "batch",
        "smoothing": 0.1,
    },
    "optim": {
        "opt": "adamw",
        "lr": 1e-3,
        # If set, the learning rate is scaled linearly: lr * global_batch / lr_base_batch.
        "lr_base_batch": None,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "clip_grad": None,  # max global gradient norm
        "alpha_lr": None,  # search: learning rate of the direction logits (None: same as lr)
        "alpha_weight_decay": 0.0,
    },
    "sched": {
        "epochs": 300,
        "warmup_epochs": 20,
        "warmup_lr": 1e-7,
        "min_lr": 1e-6,
    },
    "train": {
        "batch_size": 128,  # per process
        "eval_batch_size": None,  # None: 2 x batch_size
        "seed": 42,
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "amp": "none",  # none | bf16 | fp16
        "ema": False,
        "ema_decay": 0.9998,
        "eval_every": 1,  # epochs
        "checkpoint_every_steps": 0,  # 0: only at epoch ends
        "stop_after_steps": None,  # stop cleanly (with a checkpoint) after this global step
        "threads": None,  # torch.set_num_threads on CPU
    },
    "search": {
        "top_k": 4,  # directions kept per layer by export
    },
    "output": {
        "dir": None,  # None: runs/<command>-<model>-<timestamp>
        "plots": True,
        "safetensors": True,
    },
    "log": {
        "interval": 10,  # steps between train-step records in metrics.jsonl
        "progress": True,  # tqdm progress bars (rank 0)
    },
}

_CHOICES = {
    ("data", "dataset"): ("digits", "imagefolder", "cifar10", "cifar100"),
    ("data", "interpolation"): ("bilinear", "bicubic", "nearest"),
    ("aug", "remode"): ("pixel", "rand", "const"),
    ("aug", "mixup_mode"): ("batch", "pair", "elem"),
    ("optim", "opt"): ("adamw",),
    ("train", "amp"): ("none", "bf16", "fp16"),
}


def default_config() -> Dict[str, Any]:
    return copy.deepcopy(DEFAULTS)


#: Recipe folders of `localmamba detect` / `segment` (another schema: localmamba.dense.config).
DENSE_RECIPE_DIRS = ("detection", "segmentation")


def list_configs() -> List[str]:
    """Names of the classification recipes shipped with the package (usable as `--config NAME`)."""
    names = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        rel = path.relative_to(CONFIG_DIR).with_suffix("")
        if not rel.name.startswith("_") and rel.parts[0] not in DENSE_RECIPE_DIRS:
            names.append(rel.as_posix())
    return names


def resolve_config_path(name: Union[str, os.PathLike], relative_to: Optional[Path] = None) -> Path:
    """A config file path: an existing file, or a packaged recipe name."""
    candidates = []
    p = Path(name)
    if relative_to is not None and not p.is_absolute():
        candidates += [relative_to / p, relative_to / p.with_suffix(".yaml")]
    candidates += [p, CONFIG_DIR / p, CONFIG_DIR / (str(p) + ".yaml")]
    for c in candidates:
        if c.is_file():
            return c
    available = ", ".join(list_configs())
    raise ConfigError(f"config {str(name)!r} not found (not a file, nor a packaged recipe; packaged: {available})")


def _deep_merge(base: Dict[str, Any], update: Mapping[str, Any], where: str = "") -> Dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "kwargs":
            _deep_merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = copy.deepcopy(value)
    return base


def _read_yaml(path: Path, seen: Sequence[Path] = ()) -> Dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(str(s) for s in seen)} -> {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        _deep_merge(merged, _read_yaml(resolve_config_path(base, path.parent), [*seen, path]))
    return _deep_merge(merged, data)


def _check_keys(update: Mapping[str, Any], schema: Mapping[str, Any], where: str = "") -> None:
    for key, value in update.items():
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{where}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{where}{key}'{hint}")
        if isinstance(schema[key], dict) and key != "kwargs":
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{where}{key}' must be a mapping, got {value!r}")
            _check_keys(value, schema[key], f"{where}{key}.")


def parse_override(text: str) -> Dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}, the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. optim.lr=5e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: Dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[Union[str, Mapping[str, Any]]]) -> Dict[str, Any]:
    for ov in overrides:
        update = parse_override(ov) if isinstance(ov, str) else ov
        _check_keys(update, DEFAULTS)
        _deep_merge(cfg, update)
    return cfg


def load_config(
    config: Optional[Union[str, os.PathLike, Mapping[str, Any]]] = None,
    overrides: Iterable[Union[str, Mapping[str, Any]]] = (),
    validate: bool = True,
) -> Dict[str, Any]:
    """Defaults <- config file (or mapping) <- overrides, then validated."""
    cfg = default_config()
    if config is not None:
        if isinstance(config, Mapping):
            data = copy.deepcopy(dict(config))
            source = "<mapping>"
        else:
            path = resolve_config_path(config)
            data = _read_yaml(path)
            source = str(path)
        try:
            _check_keys(data, DEFAULTS)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        _deep_merge(cfg, data)
    apply_overrides(cfg, overrides)
    if validate:
        validate_config(cfg)
    return cfg


def _num(cfg, section, key, *, minimum=None, maximum=None, integer=False, allow_none=False, exclusive_min=False):
    value = cfg[section][key]
    name = f"{section}.{key}"
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{name} must be set")
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        cfg[section][key] = value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
        raise ConfigError(f"{name} must be {'>' if exclusive_min else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value!r}")
    if integer:
        cfg[section][key] = int(value)


def validate_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Type/range checks with messages naming the offending key. Returns cfg (normalised)."""
    _check_keys(cfg, DEFAULTS)
    for (section, key), choices in _CHOICES.items():
        value = cfg[section][key]
        if isinstance(value, str):
            value = value.lower()
            cfg[section][key] = value
        if value not in choices:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(choices)}; got {value!r}")
    m = cfg["model"]
    if not isinstance(m["name"], str) or not m["name"]:
        raise ConfigError(f"model.name must be a model name string, got {m['name']!r}")
    if not isinstance(m["kwargs"], dict):
        raise ConfigError(f"model.kwargs must be a mapping, got {m['kwargs']!r}")
    _num(cfg, "model", "drop_path", minimum=0.0, maximum=1.0)
    d = m["directions"]
    if d is not None and not isinstance(d, (str, list)):
        raise ConfigError("model.directions must be a directions file path or a list of per-layer lists")
    if isinstance(d, list):
        from ..ops import parse_directions

        for i, layer in enumerate(d):
            if not isinstance(layer, (list, tuple, str)):
                raise ConfigError(f"model.directions[{i}] must be a list of direction names, got {layer!r}")
            try:
                parse_directions(layer)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"model.directions[{i}]: {e}") from None

    _num(cfg, "data", "img_size", minimum=1, integer=True)
    _num(cfg, "data", "in_chans", minimum=1, integer=True, allow_none=True)
    _num(cfg, "data", "num_classes", minimum=1, integer=True, allow_none=True)
    _num(cfg, "data", "crop_pct", minimum=0.0, maximum=1.0, exclusive_min=True)
    _num(cfg, "data", "workers", minimum=0, integer=True)
    _num(cfg, "data", "val_fraction", minimum=0.0, maximum=1.0, exclusive_min=True)
    _num(cfg, "data", "limit_train", minimum=1, integer=True, allow_none=True)
    _num(cfg, "data", "limit_val", minimum=1, integer=True, allow_none=True)
    for key in ("mean", "std"):
        v = cfg["data"][key]
        if v is not None and (not isinstance(v, (list, tuple)) or not all(isinstance(x, (int, float)) for x in v)):
            raise ConfigError(f"data.{key} must be a list of numbers (one per channel), got {v!r}")
    if cfg["data"]["std"] is not None and any(x <= 0 for x in cfg["data"]["std"]):
        raise ConfigError(f"data.std must be positive, got {cfg['data']['std']!r}")
    if cfg["data"]["dataset"] in ("imagefolder", "cifar10", "cifar100") and not cfg["data"]["root"]:
        raise ConfigError(f"data.root must be set for dataset {cfg['data']['dataset']!r} (use --data-dir)")

    a = cfg["aug"]
    sc = a["scale"]
    if not (isinstance(sc, (list, tuple)) and len(sc) == 2 and 0 < sc[0] <= sc[1] <= 1):
        raise ConfigError(f"aug.scale must be [min, max] with 0 < min <= max <= 1, got {sc!r}")
    for key in ("hflip", "reprob", "mixup_prob", "mixup_switch_prob"):
        _num(cfg, "aug", key, minimum=0.0, maximum=1.0)
    _num(cfg, "aug", "smoothing", minimum=0.0, maximum=1.0)
    if a["smoothing"] >= 1.0:
        raise ConfigError("aug.smoothing must be < 1")
    _num(cfg, "aug", "color_jitter", minimum=0.0)
    _num(cfg, "aug", "mixup", minimum=0.0)
    _num(cfg, "aug", "cutmix", minimum=0.0)
    _num(cfg, "aug", "recount", minimum=1, integer=True)
    _num(cfg, "aug", "random_crop_padding", minimum=0, integer=True, allow_none=True)
    if a["auto_augment"] is not None:
        aa = a["auto_augment"]
        if not isinstance(aa, str) or aa.split("-")[0] not in ("rand", "augmix", "original", "originalr", "v0", "v0r", "3a"):
            raise ConfigError(
                f"aug.auto_augment must be a timm policy string such as 'rand-m9-mstd0.5-inc1', got {aa!r}"
            )

    o = cfg["optim"]
    _num(cfg, "optim", "lr", minimum=0.0, exclusive_min=True)
    _num(cfg, "optim", "lr_base_batch", minimum=1, integer=True, allow_none=True)
    _num(cfg, "optim", "weight_decay", minimum=0.0)
    _num(cfg, "optim", "eps", minimum=0.0, exclusive_min=True)
    _num(cfg, "optim", "clip_grad", minimum=0.0, exclusive_min=True, allow_none=True)
    _num(cfg, "optim", "alpha_lr", minimum=0.0, exclusive_min=True, allow_none=True)
    _num(cfg, "optim", "alpha_weight_decay", minimum=0.0)
    b = o["betas"]
    if not (isinstance(b, (list, tuple)) and len(b) == 2 and all(isinstance(x, (int, float)) and 0 <= x < 1 for x in b)):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {b!r}")

    _num(cfg, "sched", "epochs", minimum=1, integer=True)
    _num(cfg, "sched", "warmup_epochs", minimum=0)
    _num(cfg, "sched", "warmup_lr", minimum=0.0)
    _num(cfg, "sched", "min_lr", minimum=0.0)
    if cfg["sched"]["warmup_epochs"] > cfg["sched"]["epochs"]:
        raise ConfigError(
            f"sched.warmup_epochs ({cfg['sched']['warmup_epochs']}) must not exceed sched.epochs ({cfg['sched']['epochs']})"
        )
    if cfg["sched"]["min_lr"] > o["lr"]:
        raise ConfigError(f"sched.min_lr ({cfg['sched']['min_lr']}) must not exceed optim.lr ({o['lr']})")

    t = cfg["train"]
    _num(cfg, "train", "batch_size", minimum=1, integer=True)
    _num(cfg, "train", "eval_batch_size", minimum=1, integer=True, allow_none=True)
    _num(cfg, "train", "seed", minimum=0, integer=True)
    _num(cfg, "train", "ema_decay", minimum=0.0, maximum=1.0)
    _num(cfg, "train", "eval_every", minimum=1, integer=True)
    _num(cfg, "train", "checkpoint_every_steps", minimum=0, integer=True)
    _num(cfg, "train", "stop_after_steps", minimum=1, integer=True, allow_none=True)
    _num(cfg, "train", "threads", minimum=1, integer=True, allow_none=True)
    dev = t["device"]
    if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    if not isinstance(t["ema"], bool):
        raise ConfigError(f"train.ema must be true or false, got {t['ema']!r}")

    _num(cfg, "search", "top_k", minimum=1, integer=True)
    _num(cfg, "log", "interval", minimum=1, integer=True)
    for section, key in (("output", "plots"), ("output", "safetensors"), ("log", "progress"), ("data", "pin_memory")):
        if not isinstance(cfg[section][key], bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {cfg[section][key]!r}")
    return cfg


def dump_config(cfg: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    from .checkpoint import atomic_write_bytes

    text = yaml.safe_dump(_plain(cfg), sort_keys=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
