"""The embedded dataset: scenes composed from scikit-learn's handwritten digits (real 8x8 scans,
shipped inside scikit-learn, so nothing is downloaded), upscaled, coloured and pasted on textured
backgrounds. Written once into a cache folder in the formats of the real datasets:

    <root>/images/{train,val}/NNNNN.png          RGB scenes
    <root>/annotations/instances_{train,val}.json COCO instances (boxes, RLE masks, 10 categories)
    <root>/ade/images/{training,validation}/NNNNN.png   the same scenes (ADE20K layout)
    <root>/ade/annotations/{training,validation}/NNNNN.png  semantic labels: 0 unused, 1 background,
                                                  2..11 digits 0..9 (so ADE20K's reduce-zero-label
                                                  gives 11 classes, background = 0)

Every scene is a pure function of (seed, split, index): the generator is deterministic. Train and
val scenes draw from disjoint digit scans (the first 80% of scikit-learn's digits vs the rest).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["EMBEDDED_CLASSES", "EmbeddedSpec", "generate_scene", "ensure_embedded", "default_cache_dir"]

EMBEDDED_CLASSES = tuple(f"digit {i}" for i in range(10))
FORMAT_VERSION = 1


class EmbeddedSpec:
    """Parameters of the embedded dataset (all of them enter the cache folder's name)."""

    def __init__(self, num_train: int = 400, num_val: int = 50, size: int = 128, min_objects: int = 1,
                 max_objects: int = 4, min_digit: int = 24, max_digit: int = 56, seed: int = 0):
        for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1), ("size", size, 32),
                                 ("min_objects", min_objects, 1), ("min_digit", min_digit, 8)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"embedded.{name} must be an integer >= {low}, got {value!r}")
        if max_objects < min_objects or max_digit < min_digit or max_digit > size:
            raise ValueError("embedded: need min_objects <= max_objects and min_digit <= max_digit <= size")
        self.num_train, self.num_val, self.size = num_train, num_val, size
        self.min_objects, self.max_objects = min_objects, max_objects
        self.min_digit, self.max_digit, self.seed = min_digit, max_digit, seed

    def as_dict(self) -> Dict[str, int]:
        return dict(num_train=self.num_train, num_val=self.num_val, size=self.size, min_objects=self.min_objects,
                    max_objects=self.max_objects, min_digit=self.min_digit, max_digit=self.max_digit, seed=self.seed)

    def key(self) -> str:
        text = json.dumps({"v": FORMAT_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _digits() -> Tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the embedded dataset is made from scikit-learn's digits: pip install scikit-learn") from exc
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def _upscale(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC),
                      dtype=np.float32) / 255.0


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A smooth random colour field plus mild noise: not a flat colour, so the task is not trivial."""
    from PIL import Image

    coarse = rng.uniform(0.15, 0.85, size=(4, 4, 3)).astype(np.float32)
    field = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                       dtype=np.float32) / 255.0
    return np.clip(field + rng.normal(0, 0.03, size=field.shape).astype(np.float32), 0, 1)


def generate_scene(spec: EmbeddedSpec, split: str, index: int, digits=None):
    """One scene: (uint8 HxWx3 image, int32 HxW instance map (0 = none, k = k-th object),
    list of digit classes per object). Later objects occlude earlier ones."""
    images, targets = digits if digits is not None else _digits()
    cut = int(0.8 * len(images))
    pool = np.arange(cut) if split == "train" else np.arange(cut, len(images))
    rng = np.random.RandomState((spec.seed * 1_000_003 + (0 if split == "train" else 7_919) * 100_003 + index)
                                % 2**32)
    size = spec.size
    canvas = _background(rng, size)
    instance = np.zeros((size, size), dtype=np.int32)
    classes: List[int] = []
    for _ in range(rng.randint(spec.min_objects, spec.max_objects + 1)):
        k = int(pool[rng.randint(len(pool))])
        h = rng.randint(spec.min_digit, spec.max_digit + 1)
        w = max(8, int(round(h * rng.uniform(0.7, 1.0))))
        glyph = _upscale(images[k], h, w)
        mask = glyph > 0.35
        if mask.sum() < 16:
            continue
        y, x = rng.randint(0, size - h + 1), rng.randint(0, size - w + 1)
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        colour = colour if abs(colour.mean() - canvas[y:y + h, x:x + w].mean()) > 0.25 else 1.0 - colour
        region = canvas[y:y + h, x:x + w]
        alpha = np.clip(glyph * 1.5, 0, 1)[..., None]
        canvas[y:y + h, x:x + w] = region * (1 - alpha) + colour * alpha
        classes.append(int(targets[k]))
        instance[y:y + h, x:x + w][mask] = len(classes)
    image = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    return image, instance, classes


def default_cache_dir() -> Path:
    base = os.environ.get("LOCALMAMBA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "localmamba")
    return Path(base) / "dense"


def _write_split(root: Path, spec: EmbeddedSpec, split: str, count: int, digits) -> None:
    from PIL import Image

    from ._deps import require_pycocotools

    _, _, mask_utils = require_pycocotools()
    ade_split = "training" if split == "train" else "validation"
    for sub in (root / "images" / split, root / "ade" / "images" / ade_split, root / "ade" / "annotations" / ade_split):
        sub.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, instance, classes = generate_scene(spec, split, i, digits)
        name = f"{i:05d}.png"
        Image.fromarray(image).save(root / "images" / split / name)
        Image.fromarray(image).save(root / "ade" / "images" / ade_split / name)
        semantic = np.ones(instance.shape, dtype=np.uint8)  # 1: background
        images.append({"id": i + 1, "file_name": name, "height": int(image.shape[0]), "width": int(image.shape[1])})
        for j, cls in enumerate(classes, start=1):
            m = instance == j
            if m.sum() < 4:  # fully occluded
                continue
            semantic[m] = cls + 2
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                                "area": float(mask_utils.area(rle)), "bbox": [x, y, w, h], "iscrowd": 0})
        Image.fromarray(semantic).save(root / "ade" / "annotations" / ade_split / name)
    coco = {"info": {"description": "localmamba embedded digit scenes", "spec": spec.as_dict()},
            "images": images, "annotations": annotations,
            "categories": [{"id": c + 1, "name": n, "supercategory": "digit"} for c, n in enumerate(EMBEDDED_CLASSES)]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def ensure_embedded(spec: Optional[EmbeddedSpec] = None, cache_dir: Optional[os.PathLike] = None) -> Path:
    """The folder of the embedded dataset for ``spec``, generated on first use (atomically: a
    half-written folder is never seen by another process)."""
    spec = spec or EmbeddedSpec()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = base / f"embedded-{spec.key()}"
    if (root / "DONE").is_file():
        return root
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".embedded-", dir=base))
    try:
        digits = _digits()
        _write_split(tmp, spec, "train", spec.num_train, digits)
        _write_split(tmp, spec, "val", spec.num_val, digits)
        (tmp / "DONE").write_text(json.dumps(spec.as_dict()))
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first
            if not (root / "DONE").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def spec_from_config(options: Dict[str, Any]) -> EmbeddedSpec:
    return EmbeddedSpec(**options)
