"""`localmamba predict`: top-k classes of one or more images with a LocalMamba model.

Images are resized (shorter side to size / crop_pct, bicubic), centre-cropped to the model's
input size and normalised with the ImageNet mean and std, as in evaluation. A 1000-class model
reports ImageNet class names; other models report class indices.

Example:
    localmamba predict cat.jpg --model local_vssm_tiny --checkpoint local_vssm_tiny.pth
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Sequence, Tuple


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify images (top-k predictions)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s) (anything Pillow reads)")
    p.add_argument("--model", required=True, help="registered model name, e.g. local_vim_tiny or local_vssm_small")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="weights: .pth/.ckpt (raw or under model/state_dict/state_dict_ema) or .safetensors")
    p.add_argument("--topk", type=int, default=5, help="number of classes to print (default 5)")
    p.add_argument("--img-size", type=int, default=None, help="input resolution (default: the model's, 224)")
    p.add_argument("--crop-pct", type=float, default=None, help="centre-crop fraction (default: the model's, 0.875)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the checkpoint (default 1000)")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights when it has them")
    p.add_argument("--backend", choices=("native", "reference"), default=None, help="op backend (default: native)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(func=main)


def preprocess(path: str, img_size: int, crop_pct: float, mean: Sequence[float], std: Sequence[float]):
    import math

    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = int(math.floor(img_size / crop_pct))
        w, h = im.size
        if w <= h:
            new_w, new_h = scale, max(1, round(h * scale / w))
        else:
            new_w, new_h = max(1, round(w * scale / h)), scale
        im = im.resize((new_w, new_h), Image.BICUBIC)
        left, top = (new_w - img_size) // 2, (new_h - img_size) // 2
        im = im.crop((left, top, left + img_size, top + img_size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return x


def class_names(num_classes: int) -> List[str]:
    if num_classes == 1000:
        from ..models.imagenet_classes import IMAGENET_CLASSES

        return list(IMAGENET_CLASSES)
    return [f"class {i}" for i in range(num_classes)]


def predict(model, images: Sequence[str], img_size: int, crop_pct: float, topk: int, mean, std,
            device: str = "cpu") -> List[List[Tuple[int, str, float]]]:
    import torch

    names = class_names(model.num_classes)
    k = min(topk, model.num_classes)
    batch = torch.stack([preprocess(p, img_size, crop_pct, mean, std) for p in images]).to(device)
    with torch.no_grad():
        probs = model(batch).float().softmax(-1)
    top = probs.topk(k, dim=-1)
    return [[(int(i), names[int(i)], float(p)) for p, i in zip(vals, idx)] for vals, idx in zip(top.values, top.indices)]


def main(args) -> int:
    import os

    from ..models import create_model, get_model_cfg, load_checkpoint

    try:
        cfg = get_model_cfg(args.model)
    except ValueError as exc:
        print(f"localmamba predict: {exc}", file=sys.stderr)
        return 2
    if args.topk < 1:
        print("localmamba predict: --topk must be >= 1", file=sys.stderr)
        return 2
    for path in args.images:
        if not os.path.isfile(path):
            print(f"localmamba predict: image not found: {path}", file=sys.stderr)
            return 2
    img_size = args.img_size or cfg["input_size"][-1]
    crop_pct = args.crop_pct or cfg["crop_pct"]
    kwargs = dict(backend=args.backend)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    model = create_model(args.model, **kwargs)
    try:
        load_checkpoint(model, args.checkpoint, prefer_ema=args.ema)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"localmamba predict: cannot load {args.checkpoint} into {args.model}: {exc}", file=sys.stderr)
        return 1
    model = model.to(args.device).eval()
    results = predict(model, args.images, img_size, crop_pct, args.topk, cfg["mean"], cfg["std"], args.device)
    if args.json:
        print(json.dumps([{"image": img, "top": [{"index": i, "label": n, "prob": p} for i, n, p in res]}
                          for img, res in zip(args.images, results)], indent=2))
        return 0
    for img, res in zip(args.images, results):
        print(img)
        for rank, (i, name, p) in enumerate(res, 1):
            print(f"  {rank}. {name:<40s} {100 * p:6.2f}%  (class {i})")
    return 0
