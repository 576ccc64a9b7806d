"""DataLoaders wired for deterministic, resumable, rank-sharded training."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from .datasets import build_datasets
from .samplers import ShardedEvalSampler, ShardedTrainSampler
from .transforms import SeededDataset, build_transform

__all__ = ["build_loaders", "build_eval_loader"]


def _loader(dataset, sampler, batch_size, cfg, device) -> torch.utils.data.DataLoader:
    workers = cfg["data"]["workers"]
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(cfg["data"]["pin_memory"]) and device.type == "cuda",
        drop_last=False,  # the train sampler already yields whole batches only
        persistent_workers=False,
        # a private generator: creating an iterator must not consume the global RNG,
        # or a resumed run would diverge from an uninterrupted one
        generator=torch.Generator().manual_seed(0),
    )


def build_eval_loader(cfg: Dict[str, Any], dataset, info, rank: int = 0, world_size: int = 1,
                      device: torch.device = torch.device("cpu")):
    dataset.transform = build_transform(cfg, info, is_training=False)
    bs = cfg["train"]["eval_batch_size"] or 2 * cfg["train"]["batch_size"]
    return _loader(dataset, ShardedEvalSampler(len(dataset), rank, world_size), bs, cfg, device)


def build_loaders(cfg: Dict[str, Any], rank: int = 0, world_size: int = 1,
                  device: torch.device = torch.device("cpu")) -> Tuple[Any, Any, Any]:
    """(train_loader, val_loader, info). The train loader's sampler and dataset have
    `set_epoch`; call `set_train_epoch(loader, epoch, start_batch)` before iterating."""
    train, val, info = build_datasets(cfg)
    train.transform = build_transform(cfg, info, is_training=True)
    seeded = SeededDataset(train, cfg["train"]["seed"])
    sampler = ShardedTrainSampler(len(train), cfg["train"]["batch_size"], rank, world_size, seed=cfg["train"]["seed"])
    train_loader = _loader(seeded, sampler, cfg["train"]["batch_size"], cfg, device)
    val_loader = build_eval_loader(cfg, val, info, rank, world_size, device)
    return train_loader, val_loader, info


def set_train_epoch(loader, epoch: int, start_batch: int = 0) -> None:
    loader.sampler.set_epoch(epoch, start_batch)
    loader.dataset.set_epoch(epoch)
