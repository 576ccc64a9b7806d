"""Model zoo numbers: parameters, FLOPs, CPU inference and training throughput against the GEMM rate.

    python bench/models.py                      # the released models, batch 8, 224x224
    python bench/models.py --models local_vim_tiny --batch-size 16 --backend reference
    python bench/models.py --no-train --no-ops  # inference only, no per-op breakdown

Prints a Markdown table (the README's "Model zoo" and "Performance" tables come from this
script), then per model the top self-time ops of one inference batch (torch.profiler).
Throughput is images/s, fp32, median of --repeat timed batches after --warmup batches, random
weights (speed does not depend on the values):

* inference: model(x) under torch.inference_mode;
* train step: forward + cross-entropy backward + AdamW step, model in train mode.

The effective rate is the fvcore-convention FLOPs (multiply-adds) x 2 / time, x 3 for a
training step, as a percentage of torch.mm's rate measured in this process just before the
model (2048 x 2048 fp32, median of --gemm-repeat): the machine's honest ceiling. On a shared
machine only ratios measured in one run mean anything; the GEMM rate is printed per model.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_line, time_call  # noqa: E402

import localmamba  # noqa: E402
from localmamba.models import create_model, get_model_cfg  # noqa: E402

RELEASED = ["local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vssm_tiny", "local_vssm_small"]


def gemm_gflops(n: int = 2048, repeat: int = 5) -> float:
    """torch.mm's fp32 rate (GFLOP/s, 2 n^3 per product), median of `repeat` after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        samples.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(samples) / 1e9


def inference_seconds(model, x, warmup: int, repeat: int) -> float:
    model.eval()
    with torch.inference_mode():
        return time_call(lambda: model(x), warmup=warmup, repeat=repeat)["median_s"]


def train_step_seconds(model, x, warmup: int, repeat: int) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randint(0, 1000, (x.shape[0],))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), target).backward()
        opt.step()

    return time_call(step, warmup=warmup, repeat=repeat)["median_s"]


def top_ops(model, x, rows: int = 10) -> str:
    model.eval()
    with torch.inference_mode():
        model(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def percent(gflop: float, seconds: float, gemm: float) -> str:
    return f"{100 * gflop / seconds / gemm:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=RELEASED)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gemm-repeat", type=int, default=5)
    ap.add_argument("--backend", choices=("native", "reference"), default="native")
    ap.add_argument("--no-speed", action="store_true", help="only parameters and FLOPs")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    ap.add_argument("--no-ops", action="store_true", help="skip the per-op breakdown")
    args = ap.parse_args()

    print(f"# {datetime.date.today()} — {machine_line()}; backend {args.backend}; batch {args.batch_size}, "
          f"{args.img_size}x{args.img_size}, fp32; load average {os.getloadavg()[0]:.1f}")
    print("| model | params | FLOPs (fvcore) | FLOPs (paper) | paper top-1 | GEMM GFLOP/s | infer images/s | "
          "infer % of GEMM | train images/s | train % of GEMM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    breakdowns = []
    for name in args.models:
        with torch.device("meta"):
            meta = create_model(name)
        honest = localmamba.profile(meta, args.img_size)
        paper = localmamba.profile(meta, args.img_size, convention="paper")
        del meta
        top1 = get_model_cfg(name)["paper_top1"]
        cells = ["—"] * 5
        if not args.no_speed:
            torch.manual_seed(0)
            model = create_model(name, backend=args.backend)
            x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
            gemm = gemm_gflops(repeat=args.gemm_repeat)
            work = 2 * honest.gflops * args.batch_size  # GFLOP of one batch (multiply-adds x 2)
            t_inf = inference_seconds(model, x, args.warmup, args.repeat)
            cells[:3] = [f"{gemm:.0f}", f"{args.batch_size / t_inf:.2f}", percent(work, t_inf, gemm)]
            if not args.no_train:
                t_train = train_step_seconds(model, x, args.warmup, args.repeat)
                cells[3:] = [f"{args.batch_size / t_train:.2f}", percent(3 * work, t_train, gemm)]
            if not args.no_ops:
                breakdowns.append((name, top_ops(model, x)))
            del model
        print(f"| {name} | {honest.params / 1e6:.2f} M | {honest.gflops:.2f} G | {paper.gflops:.2f} G | "
              f"{'—' if top1 is None else f'{top1:.1f}%'} | {' | '.join(cells)} |", flush=True)
    for name, table in breakdowns:
        print(f"\n## {name}: top self-time ops of one inference batch\n{table}", flush=True)


if __name__ == "__main__":
    main()
