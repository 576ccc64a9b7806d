"""`localmamba predict`: top-k classes of one or more images with a LocalMamba model.

--checkpoint takes what `localmamba train` writes (a run folder, last.pt / best.pt, its
.safetensors files): the model is rebuilt from the run's config (name, sizes, directions) and
images are prepared as the run's evaluation did (input size, channels, mean / std, crop).
Other weights (an official release .pth) need --model. Images are resized (shorter side to
size / crop_pct, bicubic) and centre-cropped. A 1000-class model reports ImageNet class names;
other models report class indices.

Examples:
    localmamba predict digit.png --checkpoint runs/train-local_vim-digits-20261130-120000/
    localmamba predict cat.jpg --model local_vssm_tiny --checkpoint local_vssm_tiny.pth
"""
from __future__ import annotations

import argparse
import json
import os
from typing import List, Sequence, Tuple

from ..errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify images (top-k predictions)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s) (anything Pillow reads)")
    p.add_argument("--model", default=None,
                   help="registered model name (only for weights that record no architecture, e.g. a release .pth)")
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR_OR_FILE",
                   help="a run folder or file written by localmamba train, or weights: .pth/.ckpt (raw or under "
                        "model/state_dict/state_dict_ema) or .safetensors")
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
        im = im.convert("L" if len(mean) == 1 else "RGB")
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
    x = torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
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


def _open_images(paths: Sequence[str]) -> None:
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
        except FileNotFoundError:
            raise UserError(f"IMAGE {path}: not found") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            reason = "empty file" if os.path.isfile(path) and os.path.getsize(path) == 0 else type(exc).__name__
            raise UserError(f"IMAGE {path}: not an image Pillow can read ({reason}); give a PNG, JPEG, ... file") \
                from None


def _model_from_run(ck, args):
    """The model a run recorded (its config, or the architecture in the weights), with its
    input size, channels, normalisation and crop."""
    from ..data.datasets import IMAGENET_MEAN, IMAGENET_STD
    from ..train.artifacts import load_weights
    from ..train.modeling import build_model

    rec = ck.recorded
    if args.model is not None and args.model != rec["model"]["name"]:
        raise UserError(f"--model {args.model}: the checkpoint {ck.path} holds a {rec['model']['name']!r} model; "
                        "drop --model")
    data = rec["data"]
    if args.num_classes is not None and args.num_classes != data.get("num_classes"):
        raise UserError(f"--num-classes {args.num_classes}: the checkpoint {ck.path} has {data.get('num_classes')} "
                        "classes; drop --num-classes")
    cfg = {"model": {**rec["model"], "drop_path": 0.0, "pretrained": None}, "data": {"img_size": data["img_size"]}}
    if args.backend is not None:
        cfg["model"]["kwargs"] = {**cfg["model"]["kwargs"], "backend": args.backend}
    model = build_model(cfg, data["num_classes"], data["in_chans"])
    load_weights(model, ck, rec["model"]["name"])
    in_chans = data["in_chans"]
    mean = data.get("mean") or (IMAGENET_MEAN if in_chans == 3 else (0.5,) * in_chans)
    std = data.get("std") or (IMAGENET_STD if in_chans == 3 else (0.5,) * in_chans)
    return model, args.img_size or data["img_size"], args.crop_pct or data.get("crop_pct") or 0.875, mean, std


def _model_from_registry(ck, args):
    from ..models import create_model, get_model_cfg
    from ..train.artifacts import load_weights

    if args.model is None:
        raise UserError(f"--checkpoint {ck.path}: these weights record no architecture; pass --model NAME, or give "
                        "the run folder written by localmamba train")
    try:
        mcfg = get_model_cfg(args.model)
    except ValueError as exc:
        raise UserError(f"--model {args.model}: {exc}") from None
    kwargs = dict(backend=args.backend)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    model = create_model(args.model, **kwargs)
    load_weights(model, ck, args.model)
    return model, args.img_size or mcfg["input_size"][-1], args.crop_pct or mcfg["crop_pct"], mcfg["mean"], mcfg["std"]


def main(args) -> int:
    from ..train.artifacts import open_checkpoint

    if args.topk < 1:
        raise UserError(f"--topk {args.topk}: must be >= 1")
    _open_images(args.images)
    ck = open_checkpoint(args.checkpoint, "--checkpoint", prefer_ema=args.ema)
    build = _model_from_run if ck.recorded is not None else _model_from_registry
    model, img_size, crop_pct, mean, std = build(ck, args)
    model = model.to(args.device).eval()
    results = predict(model, args.images, img_size, crop_pct, args.topk, mean, std, args.device)
    if args.json:
        print(json.dumps([{"image": img, "top": [{"index": i, "label": n, "prob": p} for i, n, p in res]}
                          for img, res in zip(args.images, results)], indent=2))
        return 0
    for img, res in zip(args.images, results):
        print(img)
        for rank, (i, name, p) in enumerate(res, 1):
            print(f"  {rank}. {name:<40s} {100 * p:6.2f}%  (class {i})")
    return 0
