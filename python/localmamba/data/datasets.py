"""Datasets: the embedded handwritten digits (no download), CIFAR-10/100 python-format
directories, and ImageFolder trees (ImageNet layout: root/train/<class>/*.JPEG, root/val/...).

In-memory datasets (digits, CIFAR) hold uint8 tensors (N, C, H, W) resized once to the
training resolution; ImageFolder yields PIL images. Either way a sample is (image, target)
and a transform turns the image into a normalised float tensor.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .registry import get_dataset, register_dataset

__all__ = [
    "DataError",
    "DatasetInfo",
    "TensorImageDataset",
    "load_digits",
    "load_cifar",
    "load_imagefolder",
    "build_datasets",
    "record_dataset_fields",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class DataError(UserError, RuntimeError):
    """A dataset or a data-pipeline dependency is missing or malformed (a user-facing error)."""


class DatasetInfo(dict):
    """num_classes, in_chans, mean, std, classes, kind ("tensor" or "pil")."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TensorImageDataset(torch.utils.data.Dataset):
    """Images as a uint8 tensor (N, C, H, W) and integer targets."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Optional[Callable] = None, classes=None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets.long()
        self.transform = transform
        self.classes = list(classes) if classes is not None else [str(i) for i in range(int(targets.max()) + 1)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])


def resize_uint8(images: torch.Tensor, size: int, interpolation: str = "bicubic", chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) batch to size x size (antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    mode = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}[interpolation]
    out = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        shrinking = size < max(images.shape[-2:])
        kwargs = {"antialias": True, "align_corners": False} if mode != "nearest" and shrinking else (
            {"align_corners": False} if mode != "nearest" else {})
        y = F.interpolate(x, size=(size, size), mode=mode, **kwargs)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _stratified_split(targets: np.ndarray, val_fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    train_idx, val_idx = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_digits(img_size: int, val_fraction: float = 0.2, interpolation: str = "bicubic"):
    """scikit-learn's handwritten digits (1797 8x8 grey images, 10 classes), shipped inside
    the scikit-learn package: no download. A fixed stratified split (seed 0) holds out
    `val_fraction` of each class for validation."""
    try:
        from sklearn.datasets import load_digits as _load
    except Exception as e:  # pragma: no cover - depends on the environment
        raise DataError(
            "the embedded 'digits' dataset needs scikit-learn: pip install 'localmamba[train]' "
            f"(or pip install scikit-learn) [{type(e).__name__}: {e}]"
        ) from None
    d = _load()
    images = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    targets = np.asarray(d.target, dtype=np.int64)
    train_idx, val_idx = _stratified_split(targets, val_fraction)
    images = resize_uint8(images, img_size, interpolation)
    train_imgs = images[torch.from_numpy(train_idx)]
    mean = float(train_imgs.float().mean() / 255.0)
    std = float(train_imgs.float().std() / 255.0)
    classes = [str(i) for i in range(10)]
    t = torch.from_numpy(targets)
    train = TensorImageDataset(train_imgs, t[torch.from_numpy(train_idx)], classes=classes)
    val = TensorImageDataset(images[torch.from_numpy(val_idx)], t[torch.from_numpy(val_idx)], classes=classes)
    info = DatasetInfo(num_classes=10, in_chans=1, mean=(mean,), std=(std,), classes=classes, kind="tensor")
    return train, val, info


def _unpickle(path: Path) -> Dict[Any, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _key(d: Dict[Any, Any], name: str):
    return d[name.encode()] if name.encode() in d else d[name]


def load_cifar(root: str, num_classes: int, img_size: int, interpolation: str = "bicubic"):
    """CIFAR-10/100 in the "python version" layout (cifar-10-batches-py/data_batch_1..5,
    test_batch; cifar-100-python/train, test). `root` may be that folder or its parent."""
    root_p = Path(os.path.expanduser(root))
    sub = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    if (root_p / sub).is_dir():
        root_p = root_p / sub
    if num_classes == 10:
        train_files = [root_p / f"data_batch_{i}" for i in range(1, 6)]
        val_files = [root_p / "test_batch"]
        meta_file, label_key, names_key = root_p / "batches.meta", "labels", "label_names"
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        train_files, val_files = [root_p / "train"], [root_p / "test"]
        meta_file, label_key, names_key = root_p / "meta", "fine_labels", "fine_label_names"
        mean, std = CIFAR100_MEAN, CIFAR100_STD
    missing = [str(p) for p in train_files + val_files if not p.is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} python-format files not found under {root!r} (missing {', '.join(missing[:3])}). "
            f"Download and extract https://www.cs.toronto.edu/~kriz/{sub.replace('-batches-py', '').replace('-python', '')}-python.tar.gz"
        )

    def read(files):
        data, labels = [], []
        for p in files:
            d = _unpickle(p)
            data.append(np.asarray(_key(d, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(_key(d, label_key))
        return torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.long)

    classes = None
    if meta_file.is_file():
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _key(_unpickle(meta_file), names_key)]
    tx, ty = read(train_files)
    vx, vy = read(val_files)
    train = TensorImageDataset(resize_uint8(tx, img_size, interpolation), ty, classes=classes)
    val = TensorImageDataset(resize_uint8(vx, img_size, interpolation), vy, classes=classes)
    info = DatasetInfo(num_classes=num_classes, in_chans=3, mean=mean, std=std, classes=train.classes, kind="tensor")
    return train, val, info


def load_imagefolder(root: str, train_split: str = "train", val_split: str = "val"):
    """ImageNet-layout folders: root/<split>/<class>/<image>. Needs torchvision."""
    try:
        from torchvision.datasets import ImageFolder
    except Exception as e:
        raise DataError(
            "data.dataset=imagefolder needs torchvision (pip install torchvision matching your torch, and timm "
            f"for the ImageNet augmentations) [{type(e).__name__}: {e}]"
        ) from None
    root_p = Path(os.path.expanduser(root))
    dirs = {}
    for name, split in (("train", train_split), ("val", val_split)):
        d = root_p / split
        if not d.is_dir():
            raise DataError(f"image folder split {str(d)!r} not found (expected {root}/{split}/<class>/<images>)")
        dirs[name] = d
    train = ImageFolder(str(dirs["train"]))
    val = ImageFolder(str(dirs["val"]))
    if train.classes != val.classes:
        raise DataError(
            f"train and val class folders differ ({len(train.classes)} vs {len(val.classes)} classes) under {root!r}"
        )
    info = DatasetInfo(
        num_classes=len(train.classes), in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, classes=train.classes, kind="pil"
    )
    return train, val, info


class Subset(torch.utils.data.Dataset):
    """A fixed random subset of N samples (seed 0, kept in index order) that forwards
    `transform` to the wrapped dataset."""

    def __init__(self, dataset, n: int):
        self.dataset = dataset
        self.n = min(n, len(dataset))
        g = torch.Generator().manual_seed(0)
        self.indices = torch.randperm(len(dataset), generator=g)[: self.n].sort().values.tolist()
        self.classes = getattr(dataset, "classes", None)

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, t):
        self.dataset.transform = t

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


@register_dataset("digits", needs_root=False,
                  description="scikit-learn's 1797 handwritten 8x8 digits, embedded (no download)")
def _digits(d: Mapping[str, Any]):
    return load_digits(d["img_size"], d["val_fraction"], d["interpolation"])


@register_dataset("cifar10", needs_root=True, description="CIFAR-10 python-format folder under data.root")
def _cifar10(d: Mapping[str, Any]):
    return load_cifar(d["root"], 10, d["img_size"], d["interpolation"])


@register_dataset("cifar100", needs_root=True, description="CIFAR-100 python-format folder under data.root")
def _cifar100(d: Mapping[str, Any]):
    return load_cifar(d["root"], 100, d["img_size"], d["interpolation"])


@register_dataset("imagefolder", needs_root=True,
                  description="ImageNet-layout folders data.root/<split>/<class>/<image>")
def _imagefolder(d: Mapping[str, Any]):
    return load_imagefolder(d["root"], d["train_split"], d["val_split"])


def record_dataset_fields(data_cfg: Dict[str, Any], info: Mapping[str, Any]) -> Dict[str, Any]:
    """Fills the data.* values left automatic (None) with the dataset's, as a run records them
    in its config: num_classes, in_chans, and the normalisation mean / std used."""
    data_cfg["num_classes"] = data_cfg["num_classes"] or info["num_classes"]
    data_cfg["in_chans"] = data_cfg["in_chans"] or info["in_chans"]
    data_cfg["mean"] = [float(v) for v in info["mean"]]
    data_cfg["std"] = [float(v) for v in info["std"]]
    return data_cfg


def build_datasets(cfg: Dict[str, Any]):
    """(train, val, info) for cfg['data'] (transforms not attached yet)."""
    d = cfg["data"]
    kind = d["dataset"]
    try:
        spec = get_dataset(kind)
    except KeyError as e:
        raise DataError(f"data.dataset: {e.args[0]}") from None
    train, val, info = spec.load(d)
    if d["limit_train"]:
        train = Subset(train, d["limit_train"])
    if d["limit_val"]:
        val = Subset(val, d["limit_val"])
    if d["mean"] is not None:
        info["mean"] = tuple(d["mean"])
    if d["std"] is not None:
        info["std"] = tuple(d["std"])
    if len(info["mean"]) != info["in_chans"] or len(info["std"]) != info["in_chans"]:
        raise DataError(
            f"data.mean/std must have {info['in_chans']} values for dataset {kind!r}, got {info['mean']} / {info['std']}"
        )
    return train, val, info
