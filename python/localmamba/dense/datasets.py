"""Dense-prediction datasets: COCO instances (pycocotools: boxes, polygon / RLE masks, crowd
regions), ADE20K's folder layout, and the seeded sampler that makes augmentations resumable.

Samples are looked up by a *key* = epoch * len(dataset) + index: the dataset seeds the sample's
augmentation from (seed, key), so the same key gives the same sample in any worker, in any run.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from . import transforms as T
from ._deps import require_pycocotools

__all__ = ["CocoInstances", "AdeSegmentation", "SeededBatchSampler", "collate_detection", "collate_segmentation",
           "ADE20K_NUM_CLASSES"]

ADE20K_NUM_CLASSES = 150
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _sample_rng(seed: int, key: int) -> np.random.RandomState:
    return np.random.RandomState((seed * 2_654_435_761 + key * 40_503 + 12_345) % 2**32)


def _read_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class CocoInstances(torch.utils.data.Dataset):
    """A COCO instances JSON + its image folder.

    Train: images with at least one usable (non-crowd, w and h >= 1) object and both sides >= 32;
    crowd regions are left out of the targets (torchvision's Mask R-CNN has no ignore regions).
    Labels are contiguous 1..K in the JSON's category order (``category_ids`` maps them back).
    ``pipeline``: "standard" (flip; resizing in the model) or "lsj" (large-scale jitter).
    Returns (float image (3, H, W) in [0, 1], target dict with boxes xyxy, labels, masks, image_id,
    orig_size (h, w) and scale (the dataset's resize factor)).
    """

    def __init__(self, image_dir, ann_file, train: bool, pipeline: str = "standard", hflip: float = 0.5,
                 lsj_size: int = 1024, lsj_ratio: Sequence[float] = (0.1, 2.0), seed: int = 0,
                 limit: Optional[int] = None):
        COCO, _, self._mask_utils = require_pycocotools()
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file {str(self.ann_file)!r} not found")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO image folder {str(self.image_dir)!r} not found")
        if pipeline not in ("standard", "lsj"):
            raise ValueError(f"pipeline must be 'standard' or 'lsj', got {pipeline!r}")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO(str(self.ann_file))
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if self._usable(i)]
        self.ids = ids[:limit] if limit else ids
        if not self.ids:
            raise ValueError(f"{self.ann_file} has no {'usable training ' if train else ''}images")
        self.train, self.pipeline, self.hflip = train, pipeline, hflip
        self.lsj_size, self.lsj_ratio, self.seed = lsj_size, tuple(lsj_ratio), seed

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def _usable(self, image_id: int) -> bool:
        info = self.coco.imgs[image_id]
        if min(info["height"], info["width"]) < 32:
            return False
        return any(self._keep(a) for a in self.coco.imgToAnns.get(image_id, []))

    @staticmethod
    def _keep(ann: Dict[str, Any]) -> bool:
        x, y, w, h = ann["bbox"]
        return not ann.get("iscrowd", 0) and w >= 1 and h >= 1

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Tuple[np.ndarray, Dict[str, Any]]:
        """The raw image and target (before any transform)."""
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        image = _read_rgb(self.image_dir / info["file_name"])
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"{info['file_name']}: image is {image.shape[1]}x{image.shape[0]}, the annotation says "
                             f"{info['width']}x{info['height']}")
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if self._keep(a)]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], dtype=np.float32).reshape(-1, 4)
        masks = np.stack([self.coco.annToMask(a) for a in anns]).astype(np.uint8) if anns else \
            np.zeros((0, info["height"], info["width"]), dtype=np.uint8)
        labels = np.array([self.label_of[a["category_id"]] for a in anns], dtype=np.int64)
        return image, {"boxes": boxes, "labels": labels, "masks": masks, "image_id": image_id}

    def __getitem__(self, key: int):
        index = key % len(self.ids)
        image, target = self.load(index)
        orig = image.shape[:2]
        scale = 1.0
        if self.train:
            rng = _sample_rng(self.seed, key)
            if rng.uniform() < self.hflip:
                image, target = T.hflip_detection(image, target)
            if self.pipeline == "lsj":
                image, target = T.large_scale_jitter(image, target, self.lsj_size, self.lsj_ratio, rng)
        elif self.pipeline == "lsj":
            image, target, scale = T.lsj_test(image, target, self.lsj_size)
        out = {
            "boxes": torch.from_numpy(np.ascontiguousarray(target["boxes"])).float().reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(target["labels"])).long(),
            "masks": torch.from_numpy(np.ascontiguousarray(target["masks"])),
            "image_id": int(target["image_id"]),
            "orig_size": tuple(int(s) for s in orig),
            "scale": float(scale),
        }
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255), out


class AdeSegmentation(torch.utils.data.Dataset):
    """ADE20K's layout: ``root/images/<split>/*.jpg`` and ``root/annotations/<split>/*.png`` (same
    stem). With ``reduce_zero_label`` (ADE20K: 150 classes) label 0 becomes 255 (ignored) and k
    becomes k - 1. Train returns normalised (3, crop) images and (crop) labels padded with 255;
    test returns the image rescaled to ``scale`` and the label at its original size."""

    def __init__(self, root, split: str, train: bool, num_classes: int = ADE20K_NUM_CLASSES,
                 reduce_zero_label: bool = True, scale: Sequence[int] = (2048, 512),
                 ratio_range: Sequence[float] = (0.5, 2.0), crop_size: Sequence[int] = (512, 512),
                 cat_max_ratio: float = 0.75, hflip: float = 0.5, photometric: bool = True,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 seed: int = 0, limit: Optional[int] = None, class_names: Optional[Sequence[str]] = None):
        self.root = Path(root)
        image_dir, ann_dir = self.root / "images" / split, self.root / "annotations" / split
        for d in (image_dir, ann_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"ADE20K-layout folder {str(d)!r} not found (expected root/images/{split} "
                                        f"and root/annotations/{split})")
        pairs = []
        for p in sorted(image_dir.iterdir()):
            if p.suffix.lower() in _IMAGE_SUFFIXES:
                ann = ann_dir / (p.stem + ".png")
                if not ann.is_file():
                    raise FileNotFoundError(f"no annotation {str(ann)!r} for image {str(p)!r}")
                pairs.append((p, ann))
        if not pairs:
            raise ValueError(f"no images in {str(image_dir)!r}")
        self.pairs = pairs[:limit] if limit else pairs
        self.train, self.num_classes, self.reduce_zero_label = train, num_classes, reduce_zero_label
        self.scale, self.ratio_range, self.crop_size = tuple(scale), tuple(ratio_range), tuple(crop_size)
        self.cat_max_ratio, self.hflip, self.photometric = cat_max_ratio, hflip, photometric
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.seed = seed
        self.class_names = list(class_names) if class_names else [f"class {i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        image_path, ann_path = self.pairs[index]
        image = _read_rgb(image_path)
        with Image.open(ann_path) as im:
            label = np.asarray(im)
        if label.ndim != 2:
            raise ValueError(f"{ann_path}: a label map must be single-channel, got shape {label.shape}")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{ann_path}: label {label.shape} and image {image.shape[:2]} sizes differ")
        label = label.astype(np.int64)
        if self.reduce_zero_label:
            label = np.where(label == 0, 256, label) - 1  # 0 -> 255, k -> k - 1
        bad = (label != T.IGNORE_INDEX) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            raise ValueError(f"{ann_path}: label values outside 0..{self.num_classes - 1} (and 255)")
        return image, label.astype(np.uint8)

    def normalise(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std

    def __getitem__(self, key: int):
        index = key % len(self.pairs)
        image, label = self.load(index)
        if not self.train:
            h, w = T.rescale_keep_ratio(*label.shape, self.scale)
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
            return self.normalise(image), torch.from_numpy(label.astype(np.int64))
        rng = _sample_rng(self.seed, key)
        image, label = T.random_resize_segmentation(image, label, self.scale, self.ratio_range, rng)
        image, label = T.random_crop_segmentation(image, label, self.crop_size, self.cat_max_ratio, rng)
        if rng.uniform() < self.hflip:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric:
            image = T.photometric_distortion(np.ascontiguousarray(image), rng)
        x, y = T.pad_segmentation(self.normalise(image), torch.from_numpy(label.astype(np.int64)), self.crop_size)
        return x, y


class SeededBatchSampler(torch.utils.data.Sampler):
    """Batches of sample keys (epoch * n + index) for an endless, resumable run: epoch e is a
    permutation drawn from (seed, e), split over ``world`` ranks; drops the last partial batch.
    ``start(epoch, batch)`` positions it (for resume)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        if n < batch_size * world:
            raise ValueError(f"{n} training samples are fewer than one global batch ({batch_size} x {world})")
        self.n, self.batch_size, self.seed, self.rank, self.world, self.shuffle = n, batch_size, seed, rank, world, shuffle
        self.batches_per_epoch = n // (batch_size * world)
        self.epoch, self.first_batch = 0, 0

    def start(self, epoch: int, batch: int) -> None:
        self.epoch, self.first_batch = epoch, batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.first_batch

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = order[self.rank:self.batches_per_epoch * self.batch_size * self.world:self.world]
        for b in range(self.first_batch, self.batches_per_epoch):
            yield [self.epoch * self.n + i for i in per_rank[b * self.batch_size:(b + 1) * self.batch_size]]


def collate_detection(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def collate_segmentation(batch):
    images, labels = zip(*batch)
    if len({tuple(i.shape) for i in images}) > 1:
        raise ValueError("segmentation images of different sizes cannot be batched (use batch size 1 for testing)")
    return torch.stack(images), torch.stack(labels)


def shard(n: int, rank: int, world: int) -> List[int]:
    """Indices of rank's share of an evaluation set (every index exactly once over the ranks)."""
    return list(range(rank, n, world))


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
