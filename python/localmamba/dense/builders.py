"""From a dense recipe to objects: datasets, the model (with its backbone initialised from a
classification checkpoint), optimizer parameter groups and the iteration schedule."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..train.config import ConfigError
from ..train.optim import no_decay_param
from .backbones import init_backbone
from .datasets import ADE20K_NUM_CLASSES, AdeSegmentation, CocoInstances
from .detection import build_mask_rcnn
from .embedded import EMBEDDED_CLASSES, EmbeddedSpec, ensure_embedded
from .segmentation import build_upernet

__all__ = ["build_dense_datasets", "build_dense_model", "dense_param_groups", "build_dense_optimizer",
           "lr_multiplier", "build_dense_scheduler", "model_backbone", "embedded_val_images"]

_DEFAULT_SPLITS = {"coco": ("train2017", "val2017"), "ade20k": ("training", "validation"),
                   "embedded": ("train", "val")}


def _splits(cfg) -> Tuple[str, str]:
    d = cfg["data"]
    default_train, default_val = _DEFAULT_SPLITS[d["dataset"]]
    return d["train_split"] or default_train, d["val_split"] or default_val


def _embedded_root(cfg) -> Path:
    try:
        spec = EmbeddedSpec(**cfg["data"]["embedded"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data.embedded: {e}") from None
    return ensure_embedded(spec, cfg["data"]["root"])


def embedded_val_images(cfg: Dict[str, Any], indices: List[int]) -> List[Path]:
    """Paths of held-out embedded scenes (by index) of the dataset a recipe or checkpoint names,
    generated first if this machine has not yet done so."""
    if cfg["data"]["dataset"] != "embedded":
        raise ConfigError(f"--embedded-val needs a model trained on the embedded dataset, this one used "
                          f"data.dataset={cfg['data']['dataset']!r} (give image paths instead)")
    count = cfg["data"]["embedded"].get("num_val", EmbeddedSpec().num_val)
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ConfigError(f"--embedded-val: scene indices must be in 0..{count - 1}, got {bad}")
    folder = _embedded_root(cfg) / "images" / "val"
    return [folder / f"{i:05d}.png" for i in indices]


def build_dense_datasets(cfg: Dict[str, Any], train: bool = True, val: bool = True):
    """(train dataset or None, val dataset or None, info with num_classes and class_names)."""
    d, seed = cfg["data"], cfg["train"]["seed"]
    train_split, val_split = _splits(cfg)
    if cfg["task"] == "detection":
        if d["dataset"] == "embedded":
            root = _embedded_root(cfg)
            image_root, ann_root = root / "images", root / "annotations"
        else:
            root = Path(d["root"]).expanduser()
            image_root, ann_root = root, root / "annotations"

        def make(split, is_train, limit):
            return CocoInstances(image_root / split, ann_root / f"instances_{split}.json", is_train, d["pipeline"],
                                 d["hflip"], d["lsj_size"], d["lsj_ratio"], seed, limit)
    else:
        if d["dataset"] == "embedded":
            root = _embedded_root(cfg) / "ade"
            train_split, val_split = {"train": "training"}.get(train_split, train_split), \
                {"val": "validation"}.get(val_split, val_split)
            num_classes, names = len(EMBEDDED_CLASSES) + 1, ["background", *EMBEDDED_CLASSES]
        else:
            root = Path(d["root"]).expanduser()
            num_classes, names = ADE20K_NUM_CLASSES, None

        def make(split, is_train, limit):
            return AdeSegmentation(root, split, is_train, num_classes, True, d["scale"], d["ratio_range"],
                                   d["crop_size"], d["cat_max_ratio"], d["hflip"], d["photometric"], d["mean"],
                                   d["std"], seed, limit, names)
    train_ds = make(train_split, True, d["limit_train"]) if train else None
    val_ds = make(val_split, False, d["limit_val"]) if val else None
    ref = train_ds or val_ds
    info = {"num_classes": ref.num_classes, "class_names": list(ref.class_names)}
    if cfg["task"] == "detection":
        info["category_ids"] = list(ref.category_ids)
    return train_ds, val_ds, info


def build_dense_model(cfg: Dict[str, Any], num_classes: int, log=print) -> nn.Module:
    m = cfg["model"]
    common = dict(backbone_kwargs=m["kwargs"], out_indices=m["out_indices"], drop_path_rate=m["drop_path"],
                  img_size=m["img_size"])
    try:
        if cfg["task"] == "detection":
            model = build_mask_rcnn(
                m["backbone"], num_classes, arch=m["arch"], neck_channels=m["neck_channels"],
                representation_size=m["representation_size"], anchor_sizes=m["anchor_sizes"],
                min_size=tuple(m["min_size"]) if isinstance(m["min_size"], list) else m["min_size"],
                max_size=m["max_size"], resize_in_model=cfg["data"]["pipeline"] != "lsj",
                **{key: m[key] for key in ("rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                                           "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test",
                                           "box_batch_size_per_image", "mask_head_convs")},
                mean=cfg["data"]["mean"], std=cfg["data"]["std"], **common)
        else:
            model = build_upernet(m["backbone"], num_classes, channels=m["decode_channels"],
                                  aux_channels=m["aux_channels"], aux_index=m["aux_index"], aux_weight=m["aux_weight"],
                                  dropout=m["dropout"], average_non_ignored=m["average_non_ignored"],
                                  class_weight=m["class_weight"], **common)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: {e}") from None
    if m["pretrained"]:
        report = init_backbone(model_backbone(model), Path(m["pretrained"]).expanduser())
        log(str(report))
    return model


def model_backbone(model: nn.Module) -> nn.Module:
    """The LocalMamba backbone of a detector or segmenter."""
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return model.backbone.body if hasattr(model.backbone, "body") else model.backbone


def _vim_layer_id(name: str, depth: int) -> int:
    """Layer id for layer-wise lr decay: stem and position tables 0, Mamba layer i -> i + 1, the
    rest (output norms, neck, heads) depth + 1. Matches on our parameter names (``layers.i``), which
    the release's constructor (looking for ``blocks``) never did (SPEC-dense §8.8)."""
    if re.search(r"(^|\.)(patch_embed|pos_embed|cls_token|rope)(\.|$)", name) and "backbone" in name:
        return 0
    match = re.search(r"backbone\.(?:body\.)?layers\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def dense_param_groups(model: nn.Module, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Weight decay except on norms, biases, position tables and SSM A/D (as the classification
    recipes); with ``optim.layer_decay`` on a LocalVim backbone, lr scales per layer."""
    o = cfg["optim"]
    backbone = model_backbone(model)
    depth = getattr(backbone, "depth", None) if o["layer_decay"] else None
    skip = set(backbone.no_weight_decay()) if hasattr(backbone, "no_weight_decay") else set()
    groups: Dict[Tuple[float, float], Dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = 0.0 if no_decay_param(name, p, skip) else o["weight_decay"]
        scale = 1.0
        if depth is not None:
            scale = o["layer_decay"] ** (depth + 1 - _vim_layer_id(name, depth))
        group = groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})
        group["params"].append(p)
    return list(groups.values())


def build_dense_optimizer(model: nn.Module, cfg: Dict[str, Any]) -> torch.optim.Optimizer:
    o = cfg["optim"]
    groups = dense_param_groups(model, cfg)
    for g in groups:
        g["lr"] = o["lr"] * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])


def lr_multiplier(step: int, sched: Dict[str, Any], base_lr: float) -> float:
    """Linear warm-up from ``warmup_factor`` to 1, then step decay (x gamma at each milestone) or
    poly decay to ``min_lr`` at ``iters`` (the release's LinearLR + MultiStepLR / PolyLR)."""
    warmup = sched["warmup_iters"]
    if sched["policy"] == "step":
        value = sched["gamma"] ** sum(1 for m in sched["milestones"] if step >= m)
    else:
        progress = min(1.0, step / max(1, sched["iters"]))
        min_ratio = sched["min_lr"] / base_lr
        value = (1 - min_ratio) * (1 - progress) ** sched["power"] + min_ratio
    if warmup and step < warmup:
        value *= sched["warmup_factor"] + (1 - sched["warmup_factor"]) * step / warmup
    return value


def build_dense_scheduler(optimizer: torch.optim.Optimizer, cfg: Dict[str, Any]):
    sched, base = cfg["sched"], cfg["optim"]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, sched, base))


def epochs_for(iters: int, batches_per_epoch: int) -> int:
    return int(math.ceil(iters / max(1, batches_per_epoch)))
