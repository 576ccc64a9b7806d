"""Resumable, rank-sharded samplers.

`ShardedTrainSampler` shuffles with a generator seeded by (seed + epoch) — the same
permutation on every rank — drops the tail so every rank runs the same number of full
batches, gives rank r the indices perm[r::world_size], and can start part-way through an
epoch (`set_epoch(epoch, start_batch)`) so a resumed run sees exactly the remaining batches.
With world_size ranks of batch B, global batch s is perm[s*B*W:(s+1)*B*W] — the same samples
a single process with batch B*W would see.

`ShardedEvalSampler` splits indices in order without padding, so metrics summed over
ranks count every sample exactly once.
"""
from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["ShardedTrainSampler", "ShardedEvalSampler"]


class ShardedTrainSampler(torch.utils.data.Sampler):
    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        global_batch = batch_size * world_size
        if num_samples < global_batch:
            from .datasets import DataError

            raise DataError(
                f"the training set has {num_samples} samples, fewer than one global batch "
                f"({batch_size} per process x {world_size} processes = {global_batch}); lower train.batch_size"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0
        self.batches_per_epoch = num_samples // global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} out of range [0, {self.batches_per_epoch}]")
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """All ranks' indices of an epoch, in global order (before sharding)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.num_samples, generator=g)
        else:
            perm = torch.arange(self.num_samples)
        return perm[: self.batches_per_epoch * self.batch_size * self.world_size]

    def __iter__(self) -> Iterator[int]:
        mine = self.epoch_indices(self.epoch)[self.rank::self.world_size]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class ShardedEvalSampler(torch.utils.data.Sampler):
    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
