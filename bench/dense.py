"""Detectors and segmenters on LocalMamba backbones: parameters, optional FLOPs (fvcore convention,
via localmamba.profile) and forward throughput (images/s) on the CPU.

    python bench/dense.py                                   # the release's six dense models, small inputs
    python bench/dense.py --det-size 800 1280 --seg-size 512 512 --flops --repeat 3
    python bench/dense.py --models mask_rcnn_fpn:local_vssm_test upernet:local_vim_test --repeat 3

Each entry is ARCH:BACKBONE with ARCH one of mask_rcnn_fpn, mask_rcnn_vitdet, upernet. Throughput is
images/s of model([image]) (detectors, eval mode, torchvision post-processing included) or model(x)
(segmenters) under torch.inference_mode, fp32, random weights, batch 1, median of --repeat calls
after --warmup. The release's FLOPs sizes are 1280x800 (H x W) for Mask R-CNN and 512x512 for UperNet.
Prints a Markdown table; never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_line, time_call  # noqa: E402

from localmamba.dense import build_mask_rcnn, build_upernet  # noqa: E402

DEFAULT = ["mask_rcnn_fpn:local_vssm_tiny", "mask_rcnn_fpn:local_vssm_small", "mask_rcnn_vitdet:local_vim_tiny",
           "upernet:local_vssm_tiny", "upernet:local_vssm_small", "upernet:local_vim_tiny"]


def build(entry: str, det_size, seg_size):
    arch, _, backbone = entry.partition(":")
    if arch in ("mask_rcnn_fpn", "mask_rcnn_vitdet"):
        h, w = det_size
        model = build_mask_rcnn(backbone, 80, arch=arch, min_size=min(h, w), max_size=max(h, w),
                                img_size=max(h, w) if arch == "mask_rcnn_vitdet" else None)
        return model, (h, w), lambda x: model([x[0]])
    if arch == "upernet":
        h, w = seg_size
        model = build_upernet(backbone, 150, img_size=max(h, w) if backbone.startswith("local_vim") else None)
        return model, (h, w), model
    raise SystemExit(f"unknown architecture {arch!r} in {entry!r} (mask_rcnn_fpn, mask_rcnn_vitdet, upernet)")


def count_flops(model, size) -> str:
    """GFLOPs of one forward on a 1x3xHxW input (localmamba.profile, fvcore convention). Detectors
    are counted as the release's script does: the box head on every RPN proposal left after NMS
    (at most 1000) and the mask head on 100 detections (their score threshold is set to 0 for the
    count, so random weights still give 100); the table's RoIs column says how many there were."""
    from localmamba.profiling import profile

    heads = getattr(model, "roi_heads", None)
    if heads is None:
        return f"{profile(model, (3, *size)).flops / 1e9:.1f} | - | "
    rois = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: rois.__setitem__(name, i[0].shape[0]))
             for name, module in (("box", heads.box_head), ("mask", heads.mask_head))]
    threshold, heads.score_thresh = heads.score_thresh, 0.0
    try:
        flops = profile(model, (3, *size)).flops
    finally:
        heads.score_thresh = threshold
        for hook in hooks:
            hook.remove()
    return f"{flops / 1e9:.1f} | {rois.get('box', 0)} / {rois.get('mask', 0)} | "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT, metavar="ARCH:BACKBONE")
    ap.add_argument("--det-size", nargs=2, type=int, default=[320, 512], metavar=("H", "W"))
    ap.add_argument("--seg-size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"))
    ap.add_argument("--flops", action="store_true", help="also count FLOPs (one extra forward per model)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="timed forwards per model (0: FLOPs and params only)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# dense forward on CPU, {datetime.date.today()}, {machine_line()}")
    print("| model | input (HxW) | params (M) | " + ("GFLOPs (fvcore) | RoIs (box / mask) | " if args.flops else "")
          + "images/s |")
    print("|---|---|---|" + ("---|---|" if args.flops else "") + "---|")
    for entry in args.models:
        torch.manual_seed(0)
        model, (h, w), forward = build(entry, args.det_size, args.seg_size)
        model.eval()
        x = torch.rand(1, 3, h, w)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = ""
        if args.flops:
            flops = count_flops(model, (h, w))
        speed = "-"
        if args.repeat > 0:
            with torch.inference_mode():
                t = time_call(lambda: forward(x), warmup=args.warmup, repeat=args.repeat)
            speed = f"{1.0 / t['median_s']:.2f}"
        print(f"| {entry} | {h}x{w} | {params:.1f} | {flops}{speed} |", flush=True)


if __name__ == "__main__":
    main()
