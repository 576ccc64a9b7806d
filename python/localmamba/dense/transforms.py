"""Training and test transforms of the release's dense recipes, on numpy images (H, W, 3 uint8)
and targets. Randomness comes from the ``rng`` argument (a numpy RandomState seeded per sample),
so a sample's augmentation depends only on (seed, epoch, index): runs resume exactly.

Detection (SPEC-dense §2, §3): horizontal flip; large-scale jitter (random resize of the long side
to size * U(0.1, 2.0), random crop of size x size, boxes recomputed from the cropped masks, pad to
size x size with raw value 114). The 1x / MS-3x resizes happen inside the model (torchvision).
Segmentation (SPEC-dense §5): random rescale of scale (2048, 512) by U(0.5, 2.0) keeping the aspect
ratio, random crop with at most 75% of one class, flip, photometric distortion, pad (image 0 after
normalisation, label 255); test: rescale to (2048, 512) keeping the ratio.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ["hflip_detection", "resize_detection", "large_scale_jitter", "lsj_test", "rescale_keep_ratio",
           "random_resize_segmentation", "random_crop_segmentation", "photometric_distortion", "boxes_from_masks",
           "LSJ_PAD_VALUE"]

LSJ_PAD_VALUE = 114
IGNORE_INDEX = 255


def _resize_image(image: np.ndarray, h: int, w: int, resample=Image.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((w, h), resample))


def _resize_masks(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    if len(masks) == 0:
        return np.zeros((0, h, w), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST)) for m in masks])


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes (pixel edges) of binary masks; zero boxes for empty masks."""
    out = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out


def hflip_detection(image: np.ndarray, target: Dict) -> Tuple[np.ndarray, Dict]:
    w = image.shape[1]
    target = dict(target)
    boxes = target["boxes"].copy()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    target["masks"] = target["masks"][:, :, ::-1].copy()
    return image[:, ::-1].copy(), target


def resize_detection(image: np.ndarray, target: Dict, scale: float) -> Tuple[np.ndarray, Dict]:
    h, w = image.shape[:2]
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    target = dict(target)
    target["boxes"] = target["boxes"] * np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)
    target["masks"] = _resize_masks(target["masks"], nh, nw)
    return _resize_image(image, nh, nw), target


def _pad_to(image: np.ndarray, target: Dict, size: int) -> Tuple[np.ndarray, Dict]:
    h, w = image.shape[:2]
    out = np.full((max(size, h), max(size, w), 3), LSJ_PAD_VALUE, dtype=np.uint8)
    out[:h, :w] = image
    masks = np.zeros((len(target["masks"]), out.shape[0], out.shape[1]), dtype=np.uint8)
    masks[:, :h, :w] = target["masks"]
    return out, dict(target, masks=masks)


def large_scale_jitter(image: np.ndarray, target: Dict, size: int, ratio_range: Sequence[float],
                       rng: np.random.RandomState) -> Tuple[np.ndarray, Dict]:
    """ViTDet LSJ: resize (long side = size * r), crop a size x size window, recompute boxes from the
    masks, drop objects that vanished, pad to size x size with 114."""
    h, w = image.shape[:2]
    r = rng.uniform(*ratio_range)
    image, target = resize_detection(image, target, size * r / max(h, w))
    h, w = image.shape[:2]
    ch, cw = min(h, size), min(w, size)
    y0, x0 = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
    image = image[y0:y0 + ch, x0:x0 + cw]
    masks = target["masks"][:, y0:y0 + ch, x0:x0 + cw]
    boxes = boxes_from_masks(masks)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 1e-2) & ((boxes[:, 3] - boxes[:, 1]) > 1e-2)
    target = dict(target, boxes=boxes[keep], labels=target["labels"][keep], masks=masks[keep])
    return _pad_to(image, target, size)


def lsj_test(image: np.ndarray, target: Dict, size: int) -> Tuple[np.ndarray, Dict, float]:
    """Test side of LSJ: long side to ``size``, pad to size x size with 114. Returns the scale."""
    scale = size / max(image.shape[:2])
    image, target = resize_detection(image, target, scale)
    image, target = _pad_to(image, target, size)
    return image, target, scale


def rescale_keep_ratio(h: int, w: int, scale: Sequence[int]) -> Tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side <= max(scale), short <= min(scale)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(1, int(round(h * factor))), max(1, int(round(w * factor)))


def random_resize_segmentation(image: np.ndarray, label: np.ndarray, scale: Sequence[int],
                               ratio_range: Sequence[float], rng: np.random.RandomState):
    r = rng.uniform(*ratio_range)
    nh, nw = rescale_keep_ratio(*label.shape, [s * r for s in scale])
    return _resize_image(image, nh, nw), np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))


def random_crop_segmentation(image: np.ndarray, label: np.ndarray, crop: Sequence[int], cat_max_ratio: float,
                             rng: np.random.RandomState, tries: int = 10):
    """A crop of at most crop = (h, w); re-drawn (up to ``tries`` times) while one class covers more
    than ``cat_max_ratio`` of its labelled pixels."""
    h, w = label.shape
    ch, cw = min(crop[0], h), min(crop[1], w)

    def window():
        y, x = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
        return y, x

    y, x = window()
    if cat_max_ratio < 1.0:
        for _ in range(tries):
            values, counts = np.unique(label[y:y + ch, x:x + cw], return_counts=True)
            counts = counts[values != IGNORE_INDEX]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            y, x = window()
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def _rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).convert("HSV"))


def _hsv_to_rgb(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img, mode="HSV").convert("RGB"))


def photometric_distortion(image: np.ndarray, rng: np.random.RandomState, brightness: float = 32,
                           contrast: Tuple[float, float] = (0.5, 1.5), saturation: Tuple[float, float] = (0.5, 1.5),
                           hue: float = 18) -> np.ndarray:
    """mmseg's PhotoMetricDistortion: each step with probability 1/2 — brightness +-32, contrast
    x0.5-1.5 (before or after the colour steps), saturation x0.5-1.5, hue +-18 (of 180)."""
    img = image.astype(np.float32)
    if rng.randint(2):
        img = img + rng.uniform(-brightness, brightness)
    contrast_first = rng.randint(2)
    if contrast_first and rng.randint(2):
        img = img * rng.uniform(*contrast)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.randint(2) or rng.randint(2):
        hsv = _rgb_to_hsv(img).astype(np.float32)
        if rng.randint(2):
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*saturation), 0, 255)
        if rng.randint(2):  # PIL hue spans 0..255 for 360 degrees; 18 OpenCV units = 36 degrees
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 256 / 180) % 256
        img = _hsv_to_rgb(hsv.astype(np.uint8))
    if not contrast_first and rng.randint(2):
        img = np.clip(img.astype(np.float32) * rng.uniform(*contrast), 0, 255).astype(np.uint8)
    return img


def pad_segmentation(image, label, size: Sequence[int], image_value: float = 0.0, label_value: int = IGNORE_INDEX):
    """Pads a (3, H, W) normalised tensor and its (H, W) label at the right/bottom to ``size``."""
    import torch.nn.functional as F

    ph, pw = max(0, size[0] - image.shape[-2]), max(0, size[1] - image.shape[-1])
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=image_value)
        label = F.pad(label, (0, pw, 0, ph), value=label_value)
    return image, label


def optional(value: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
    return None if value is None else tuple(float(v) for v in value)
