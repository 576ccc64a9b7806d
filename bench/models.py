"""Model zoo numbers: parameters, FLOPs (fvcore and paper conventions) and CPU inference throughput.

    python bench/models.py                      # the released models, batch 8, 224x224
    python bench/models.py --models local_vim_tiny --batch-size 16 --backend reference

Prints a Markdown table (the README's "Model zoo" table comes from this script). Throughput is
images/s of model(x) under torch.inference_mode, fp32, median of --repeat timed batches after
--warmup batches, random weights (speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_line, time_call  # noqa: E402

import localmamba  # noqa: E402
from localmamba.models import create_model, get_model_cfg  # noqa: E402

RELEASED = ["local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vssm_tiny", "local_vssm_small"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=RELEASED)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", choices=("native", "reference"), default="native")
    ap.add_argument("--no-speed", action="store_true", help="only parameters and FLOPs")
    args = ap.parse_args()

    print(f"# {datetime.date.today()} — {machine_line()}; backend {args.backend}; batch {args.batch_size}, "
          f"{args.img_size}x{args.img_size}, fp32")
    print("| model | params | FLOPs (fvcore) | FLOPs (paper) | paper top-1 | CPU images/s |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        with torch.device("meta"):
            meta = create_model(name)
        honest = localmamba.profile(meta, args.img_size)
        paper = localmamba.profile(meta, args.img_size, convention="paper")
        del meta
        top1 = get_model_cfg(name)["paper_top1"]
        speed = "—"
        if not args.no_speed:
            torch.manual_seed(0)
            model = create_model(name, backend=args.backend).eval()
            x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
            with torch.inference_mode():
                t = time_call(lambda: model(x), warmup=args.warmup, repeat=args.repeat)
            speed = f"{args.batch_size / t['median_s']:.1f}"
            del model
        print(f"| {name} | {honest.params / 1e6:.2f} M | {honest.gflops:.2f} G | {paper.gflops:.2f} G | "
              f"{'—' if top1 is None else f'{top1:.1f}%'} | {speed} |", flush=True)


if __name__ == "__main__":
    main()
