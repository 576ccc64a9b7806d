"""Train / eval transforms and batch mixing.

- In-memory datasets (digits, CIFAR): uint8 tensors, already at the training resolution.
  Train: pad-and-random-crop, horizontal flip (torch), optional RandAugment / colour jitter
  (timm / torchvision, on PIL), normalise, optional random erasing (timm).
  Eval: normalise.
- ImageFolder: `timm.data.create_transform` (RandomResizedCrop, flip, RandAugment, colour
  jitter, random erasing; resize + centre crop at `crop_pct` for eval), with a torchvision
  fallback when timm is missing and no timm-only augmentation is requested.
- Mixup / CutMix: `timm.data.Mixup` (soft targets with label smoothing built in).

Augmentation randomness is made a pure function of (seed, epoch, sample index) by
`SeededDataset`, so a resumed run, a run with data-loading workers and each DDP rank all
see exactly the same augmented samples.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import DataError

__all__ = ["build_transform", "build_mixup", "SeededDataset", "Normalize", "TensorTrainTransform", "require_timm"]


# timm's increasing posterize keeps int(4 - 4 * m / 10) bits, i.e. 0 bits at the clipped top
# magnitude m = 10 (reached often with `mstd`), which current Pillow rejects ("bits must be
# between 1 and 8"). Capping the sampled magnitude just below 10 keeps at least one bit and leaves
# every other op's strength unchanged to within 0.1 %. A user-given `mmax` is respected.
_SAFE_MAGNITUDE_MAX = 9.99


def _cap_rand_augment_magnitude(transform):
    stack = [transform]
    while stack:
        t = stack.pop()
        stack.extend(getattr(t, "transforms", None) or [])
        for op in getattr(t, "ops", None) or []:
            if hasattr(op, "magnitude_max") and op.magnitude_max is None:
                op.magnitude_max = _SAFE_MAGNITUDE_MAX
    return transform


def require_timm(feature: str):
    try:
        import timm  # noqa: F401
        import timm.data  # noqa: F401
    except Exception as e:
        raise DataError(
            f"{feature} needs timm (pip install timm, with a torchvision matching your torch) "
            f"[{type(e).__name__}: {e}]"
        ) from None
    return timm


def _require_torchvision(feature: str):
    try:
        import torchvision.transforms as T
    except Exception as e:
        raise DataError(
            f"{feature} needs torchvision (pip install torchvision matching your torch) [{type(e).__name__}: {e}]"
        ) from None
    return T


class Normalize:
    """uint8 (C, H, W) or float [0, 1] tensor -> normalised float tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = img.float().div_(255.0) if img.dtype == torch.uint8 else img.float()
        return (x - self.mean) / self.std


def _to_pil(img: torch.Tensor):
    from PIL import Image

    arr = img.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0], mode="L") if arr.shape[2] == 1 else Image.fromarray(arr, mode="RGB")


def _from_pil(pil, channels: int) -> torch.Tensor:
    arr = np.asarray(pil.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class TensorTrainTransform:
    """Training augmentation for in-memory uint8 (C, H, W) images."""

    def __init__(self, img_size: int, mean, std, padding: int = 0, hflip: float = 0.0,
                 pil_ops: Optional[Callable] = None, erasing: Optional[Callable] = None):
        self.img_size = img_size
        self.padding = padding
        self.hflip = hflip
        self.pil_ops = pil_ops
        self.erasing = erasing
        self.normalize = Normalize(mean, std)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c, h, w = img.shape
        if self.padding > 0:
            p = self.padding
            padded = F.pad(img, (p, p, p, p))
            top = int(torch.randint(0, 2 * p + 1, ()).item())
            left = int(torch.randint(0, 2 * p + 1, ()).item())
            img = padded[:, top:top + h, left:left + w]
        if self.hflip > 0 and torch.rand(()).item() < self.hflip:
            img = img.flip(-1)
        if self.pil_ops is not None:
            img = _from_pil(self.pil_ops(_to_pil(img.contiguous())), c)
        x = self.normalize(img)
        if self.erasing is not None:
            x = self.erasing(x)
        return x


def build_transform(cfg: Dict[str, Any], info, is_training: bool) -> Callable:
    d, a = cfg["data"], cfg["aug"]
    img_size = d["img_size"]
    mean, std = tuple(info["mean"]), tuple(info["std"])
    if info["kind"] == "tensor":
        if not is_training:
            return Normalize(mean, std)
        pil_ops = []
        if a["auto_augment"]:
            require_timm("aug.auto_augment (RandAugment)")
            from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform

            fill = tuple(int(round(255 * m)) for m in mean)
            hparams = dict(
                translate_const=max(1, int(img_size * 0.45)),
                # the fill colour of geometric ops: an int for grey ("L") images, a tuple for RGB
                img_mean=fill[0] if len(fill) == 1 else fill,
            )
            aa = a["auto_augment"]
            if aa.startswith("rand"):
                pil_ops.append(_cap_rand_augment_magnitude(rand_augment_transform(aa, hparams)))
            elif aa.startswith("augmix"):
                pil_ops.append(augment_and_mix_transform(aa, hparams))
            else:
                pil_ops.append(auto_augment_transform(aa, hparams))
        if a["color_jitter"] and a["color_jitter"] > 0:
            T = _require_torchvision("aug.color_jitter")
            cj = float(a["color_jitter"])
            pil_ops.append(T.ColorJitter(cj, cj, cj))
        erasing = None
        if a["reprob"] > 0:
            require_timm("aug.reprob (random erasing)")
            from timm.data.random_erasing import RandomErasing

            erasing = RandomErasing(a["reprob"], mode=a["remode"], max_count=a["recount"], device="cpu")
        padding = a["random_crop_padding"]
        if padding is None:
            padding = img_size // 8

        def compose(img, ops=tuple(pil_ops)):
            for op in ops:
                img = op(img)
            return img

        return TensorTrainTransform(img_size, mean, std, padding, a["hflip"], compose if pil_ops else None, erasing)

    # PIL images (ImageFolder)
    try:
        import timm.data  # noqa: F401

        have_timm = True
    except Exception:
        have_timm = False
    if have_timm:
        from timm.data import create_transform

        return _cap_rand_augment_magnitude(create_transform(
            input_size=(info["in_chans"], img_size, img_size),
            is_training=is_training,
            scale=tuple(a["scale"]),
            hflip=a["hflip"],
            color_jitter=a["color_jitter"] or None,
            auto_augment=a["auto_augment"],
            interpolation=d["interpolation"],
            mean=mean,
            std=std,
            re_prob=a["reprob"],
            re_mode=a["remode"],
            re_count=a["recount"],
            crop_pct=d["crop_pct"],
        ))
    if is_training and (a["auto_augment"] or a["reprob"] > 0):
        require_timm("RandAugment / random erasing on image folders")
    T = _require_torchvision("data.dataset=imagefolder")
    interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
              "nearest": T.InterpolationMode.NEAREST}[d["interpolation"]]
    if is_training:
        ops = [T.RandomResizedCrop(img_size, scale=tuple(a["scale"]), interpolation=interp)]
        if a["hflip"] > 0:
            ops.append(T.RandomHorizontalFlip(a["hflip"]))
        if a["color_jitter"]:
            cj = float(a["color_jitter"])
            ops.append(T.ColorJitter(cj, cj, cj))
    else:
        resize = int(round(img_size / d["crop_pct"]))
        ops = [T.Resize(resize, interpolation=interp), T.CenterCrop(img_size)]
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def build_mixup(cfg: Dict[str, Any], num_classes: int):
    """timm Mixup/CutMix (or None when both are off)."""
    a = cfg["aug"]
    if not (a["mixup"] > 0 or a["cutmix"] > 0):
        return None
    require_timm("aug.mixup / aug.cutmix")
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=a["mixup"],
        cutmix_alpha=a["cutmix"],
        prob=a["mixup_prob"],
        switch_prob=a["mixup_switch_prob"],
        mode=a["mixup_mode"],
        label_smoothing=a["smoothing"],
        num_classes=num_classes,
    )


def _seed_rngs(seed_words: Sequence[int]) -> None:
    """Seed Python, NumPy and torch's CPU RNG from one SeedSequence of `seed_words`. Only the CPU
    generator is reseeded (torch.manual_seed would also queue a reseed of every CUDA generator,
    which no restore below undoes, and costs ~90 us per call)."""
    ss = np.random.SeedSequence(list(seed_words))
    s32, s64 = ss.generate_state(2, dtype=np.uint32), ss.generate_state(1, dtype=np.uint64)
    random.seed(int(s64[0]))
    np.random.seed(int(s32[0]))
    torch.default_generator.manual_seed(int(s64[0]) & 0x7FFF_FFFF_FFFF_FFFF)


@contextlib.contextmanager
def _rngs_restored():
    """Python, NumPy and torch (CPU) RNG states as they were on entry, after the block."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def _seeded(seed_words: Sequence[int]):
    """Seed Python, NumPy and torch (CPU) RNGs inside the block, restoring them after."""
    with _rngs_restored():
        _seed_rngs(seed_words)
        yield


class SeededDataset(torch.utils.data.Dataset):
    """Makes each sample's augmentation a deterministic function of (seed, epoch, index)."""

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index: int):
        with _seeded((self.seed, self.epoch, int(index))):
            return self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> list:
        """A batch (the DataLoader's batched fetch): each sample seeded as in __getitem__, the
        global RNG states saved and restored once per batch instead of once per sample."""
        out = []
        with _rngs_restored():
            for index in indices:
                _seed_rngs((self.seed, self.epoch, int(index)))
                out.append(self.dataset[index])
        return out
