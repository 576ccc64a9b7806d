"""Recipes of `localmamba detect` / `localmamba segment`: the same YAML mechanics as the
classification recipes (``_base_`` inheritance, dotted overrides, unknown keys rejected with a
hint; see ``localmamba.train.config``) over the dense schema below."""
from __future__ import annotations

import copy
import difflib
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from ..train.config import CONFIG_DIR, ConfigError, deep_merge, parse_override, read_yaml, resolve_config_path

__all__ = ["DENSE_DEFAULTS", "load_dense_config", "with_dense_defaults", "validate_dense_config", "list_dense_configs", "TASKS"]

TASKS = ("detection", "segmentation")

DENSE_DEFAULTS: Dict[str, Any] = {
    "task": "detection",  # detection | segmentation
    "model": {
        "arch": None,  # mask_rcnn_fpn | mask_rcnn_vitdet | upernet (None: from the task and backbone)
        "backbone": "local_vssm_tiny",
        "kwargs": {},  # backbone constructor arguments (dims, depths, embed_dim, ...)
        "out_indices": None,
        "drop_path": 0.2,
        "img_size": None,  # LocalVim: the token grid its position tables are built for
        "pretrained": None,  # a classification checkpoint for the backbone (strict on backbone keys)
        "num_classes": None,  # None: from the dataset
        # detection
        "neck_channels": 256,
        "representation_size": 1024,
        "anchor_sizes": [32, 64, 128, 256, 512],
        "min_size": 800,  # torchvision's resize: short side (a list: random choice while training)
        "max_size": 1333,
        # RPN proposals kept per pyramid level before NMS / per image after it (torchvision's
        # defaults but 1000 after NMS in training, as mmdet)
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_train": 1000,
        "rpn_post_nms_top_n_test": 1000,
        "box_batch_size_per_image": 512,  # RoIs sampled per image for the box head
        "mask_head_convs": 4,
        # segmentation
        "decode_channels": 512,
        "aux_channels": 256,
        "aux_index": None,
        "aux_weight": 0.4,
        "dropout": 0.1,
        "average_non_ignored": False,
        "class_weight": None,  # segmentation: one loss weight per class (mmseg's class_weight), None: all 1
    },
    "data": {
        "dataset": "embedded",  # embedded | coco | ade20k
        "root": None,
        "train_split": None,  # None: train2017 / training (embedded: train)
        "val_split": None,  # None: val2017 / validation (embedded: val)
        "pipeline": "standard",  # detection: standard | lsj
        "hflip": 0.5,
        "lsj_size": 1024,
        "lsj_ratio": [0.1, 2.0],
        "scale": [2048, 512],  # segmentation rescale (long, short) before the ratio
        "ratio_range": [0.5, 2.0],
        "crop_size": [512, 512],
        "cat_max_ratio": 0.75,
        "photometric": True,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "workers": 2,
        "limit_train": None,
        "limit_val": None,
        "embedded": {"num_train": 400, "num_val": 50, "size": 128, "min_objects": 1, "max_objects": 4,
                     "min_digit": 24, "max_digit": 56, "seed": 0},
    },
    "optim": {
        "lr": 1e-4,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "clip_grad": None,
        # LocalVim: lr x layer_decay^(depth + 1 - layer id) (stem 0, layer i -> i + 1, rest depth + 1)
        "layer_decay": None,
    },
    "sched": {
        "iters": 1000,
        "warmup_iters": 100,
        "warmup_factor": 0.001,  # lr multiplier at iteration 0 of the linear warm-up
        "policy": "step",  # step | poly
        "milestones": [],  # step: iterations where the lr is multiplied by gamma
        "gamma": 0.1,
        "power": 1.0,  # poly
        "min_lr": 0.0,
    },
    "train": {
        "batch_size": 2,
        "seed": 42,
        "device": "auto",
        "amp": "none",
        "eval_every": 0,  # iterations between validations (0: only at the end)
        "checkpoint_every": 0,  # iterations between checkpoints (0: only at the end)
        "stop_after_steps": None,
        "threads": None,
    },
    "eval": {
        "mode": "whole",  # segmentation: whole | slide
        "crop": [512, 512],
        "stride": [341, 341],
        "score_threshold": 0.3,  # predict: drawn detections
    },
    "output": {"dir": None, "plots": True},
    "log": {"interval": 10, "progress": True},
}

def _check_keys(update: Mapping[str, Any], schema: Mapping[str, Any] = None, where: str = "") -> None:
    """Rejects keys the dense schema does not have, with a "did you mean" hint."""
    schema = DENSE_DEFAULTS if schema is None else schema
    for key, value in update.items():
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{where}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{where}{key}'{hint}")
        if isinstance(schema[key], dict) and key != "kwargs":
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{where}{key}' must be a mapping, got {value!r}")
            _check_keys(value, schema[key], f"{where}{key}.")


_CHOICES = {
    ("model", "arch"): (None, "mask_rcnn_fpn", "mask_rcnn_vitdet", "upernet"),
    ("data", "dataset"): ("embedded", "coco", "ade20k"),
    ("data", "pipeline"): ("standard", "lsj"),
    ("sched", "policy"): ("step", "poly"),
    ("train", "amp"): ("none", "bf16", "fp16"),
    ("eval", "mode"): ("whole", "slide"),
}


def _positive_int(value, name: str, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _number(value, name: str, minimum: float = 0.0, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")
    return float(value)


def _pair(value, name: str) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"{name} must be a pair of numbers, got {value!r}")


def validate_dense_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Checks types and ranges, naming the offending key; fills the task-dependent defaults."""
    _check_keys(cfg, DENSE_DEFAULTS)
    if cfg["task"] not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {cfg['task']!r}")
    for (section, key), choices in _CHOICES.items():
        if cfg[section][key] not in choices:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(str(c) for c in choices)}; "
                              f"got {cfg[section][key]!r}")
    m, d, o, s, t = cfg["model"], cfg["data"], cfg["optim"], cfg["sched"], cfg["train"]
    task = cfg["task"]
    if (m["arch"] == "upernet") != (task == "segmentation") and m["arch"] is not None:
        raise ConfigError(f"model.arch {m['arch']!r} does not fit task {task!r}")
    if task == "detection" and d["dataset"] == "ade20k":
        raise ConfigError("data.dataset ade20k is a segmentation dataset; detection reads coco or embedded")
    if task == "segmentation" and d["dataset"] == "coco":
        raise ConfigError("data.dataset coco is a detection dataset; segmentation reads ade20k or embedded")
    if d["dataset"] != "embedded" and not d["root"]:
        raise ConfigError(f"data.root must be set for data.dataset {d['dataset']!r} (use --data-dir)")
    m["drop_path"] = _number(m["drop_path"], "model.drop_path")
    _positive_int(m["num_classes"], "model.num_classes", allow_none=True)
    _positive_int(m["img_size"], "model.img_size", allow_none=True)
    for key in ("neck_channels", "representation_size", "decode_channels", "aux_channels", "max_size",
                "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
                "rpn_post_nms_top_n_test", "box_batch_size_per_image", "mask_head_convs"):
        _positive_int(m[key], f"model.{key}")
    if not (isinstance(m["anchor_sizes"], list) and len(m["anchor_sizes"]) == 5):
        raise ConfigError(f"model.anchor_sizes must list 5 sizes (one per pyramid level), got {m['anchor_sizes']!r}")
    ms = m["min_size"]
    if not (isinstance(ms, int) or (isinstance(ms, list) and ms and all(isinstance(v, int) for v in ms))):
        raise ConfigError(f"model.min_size must be an integer or a list of integers, got {ms!r}")
    m["aux_weight"] = _number(m["aux_weight"], "model.aux_weight")
    cw = m["class_weight"]
    if cw is not None:
        if not (isinstance(cw, list) and cw and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      and v >= 0 for v in cw) and any(v > 0 for v in cw)):
            raise ConfigError(f"model.class_weight must be a list of non-negative numbers (one per class, "
                              f"not all zero) or null, got {cw!r}")
        m["class_weight"] = [float(v) for v in cw]
    m["dropout"] = _number(m["dropout"], "model.dropout")
    for key in ("lsj_ratio", "scale", "ratio_range", "crop_size"):
        _pair(d[key], f"data.{key}")
    d["hflip"] = _number(d["hflip"], "data.hflip")
    _positive_int(d["lsj_size"], "data.lsj_size", minimum=32)
    _positive_int(d["workers"], "data.workers", minimum=0)
    _positive_int(d["limit_train"], "data.limit_train", allow_none=True)
    _positive_int(d["limit_val"], "data.limit_val", allow_none=True)
    o["lr"] = _number(o["lr"], "optim.lr")
    if o["lr"] <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o['lr']!r}")
    o["weight_decay"] = _number(o["weight_decay"], "optim.weight_decay")
    o["eps"] = _number(o["eps"], "optim.eps")
    o["clip_grad"] = _number(o["clip_grad"], "optim.clip_grad", allow_none=True)
    o["layer_decay"] = _number(o["layer_decay"], "optim.layer_decay", allow_none=True)
    _positive_int(s["iters"], "sched.iters")
    _positive_int(s["warmup_iters"], "sched.warmup_iters", minimum=0)
    s["warmup_factor"] = _number(s["warmup_factor"], "sched.warmup_factor")
    s["gamma"] = _number(s["gamma"], "sched.gamma")
    s["power"] = _number(s["power"], "sched.power")
    s["min_lr"] = _number(s["min_lr"], "sched.min_lr")
    if not isinstance(s["milestones"], list) or any(not isinstance(v, int) for v in s["milestones"]):
        raise ConfigError(f"sched.milestones must be a list of iterations, got {s['milestones']!r}")
    _positive_int(t["batch_size"], "train.batch_size")
    _positive_int(t["seed"], "train.seed", minimum=0)
    _positive_int(t["eval_every"], "train.eval_every", minimum=0)
    _positive_int(t["checkpoint_every"], "train.checkpoint_every", minimum=0)
    _positive_int(t["stop_after_steps"], "train.stop_after_steps", allow_none=True)
    _positive_int(t["threads"], "train.threads", allow_none=True)
    dev = t["device"]
    if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    _pair(cfg["eval"]["crop"], "eval.crop")
    _pair(cfg["eval"]["stride"], "eval.stride")
    _positive_int(cfg["log"]["interval"], "log.interval")
    return cfg


def load_dense_config(config: Optional[Union[str, os.PathLike, Mapping[str, Any]]] = None,
                      overrides: Iterable[Union[str, Mapping[str, Any]]] = (), task: Optional[str] = None,
                      validate: bool = True) -> Dict[str, Any]:
    """Defaults <- recipe (a file or a packaged name such as ``detection/embedded_local_vssm``) <-
    overrides (``section.key=value`` strings or nested mappings), then validated."""
    cfg = copy.deepcopy(DENSE_DEFAULTS)
    if task is not None:
        cfg["task"] = task
    if config is not None:
        if isinstance(config, Mapping):
            data, source = copy.deepcopy(dict(config)), "<mapping>"
        else:
            path = resolve_config_path(config)
            data, source = read_yaml(path), str(path)
        try:
            _check_keys(data, DENSE_DEFAULTS)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        deep_merge(cfg, data)
        if task is not None and cfg["task"] != task:
            raise ConfigError(f"{source} is a {cfg['task']} recipe, not a {task} one")
    for ov in overrides:
        update = parse_override(ov) if isinstance(ov, str) else ov
        _check_keys(update, DENSE_DEFAULTS)
        deep_merge(cfg, update)
    return validate_dense_config(cfg) if validate else cfg


def with_dense_defaults(saved: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's saved recipe over today's defaults: keys added since it was written get
    their default (which is what that run used, defaults being the old behaviour)."""
    return deep_merge(copy.deepcopy(DENSE_DEFAULTS), saved)


def list_dense_configs(task: str) -> List[str]:
    """Packaged recipe names of a task, e.g. ``detection/embedded_local_vssm``."""
    folder = CONFIG_DIR / task
    return sorted(f"{task}/{p.stem}" for p in folder.glob("*.yaml") if not p.stem.startswith("_"))
