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
training step, as a percentage of torch.mm's rate (2048 x 2048 fp32): the machine's honest
ceiling. The GEMM is timed interleaved with the model -- before every timed batch, median of
--gemm-repeat products -- and the percentage is the median of the per-batch ratios, so a load
that changes during the run moves both sides of each ratio. On a shared machine only such
ratios mean anything; the printed GEMM rate is the median of all GEMM samples of the model.
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
from common import machine_line  # noqa: E402

import localmamba  # noqa: E402
from localmamba.models import create_model, get_model_cfg  # noqa: E402

RELEASED = ["local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vssm_tiny", "local_vssm_small"]


class Gemm:
    """torch.mm's fp32 rate (GFLOP/s, 2 n^3 per product) on fixed n x n operands."""

    def __init__(self, n: int = 2048, repeat: int = 5):
        self.n, self.repeat = n, repeat
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(self.a, self.b)  # warm-up

    def gflops(self) -> float:
        """Median of `repeat` products, now."""
        samples = []
        for _ in range(self.repeat):
            start = time.perf_counter()
            torch.mm(self.a, self.b)
            samples.append(time.perf_counter() - start)
        return 2 * self.n ** 3 / statistics.median(samples) / 1e9


def interleaved(fn, gemm: Gemm, work_gflop: float, warmup: int, repeat: int):
    """Times fn `repeat` times after `warmup` calls, a GEMM rate sample before each timed call.
    Returns (median seconds of fn, median of the per-call rate ratios, median GEMM GFLOP/s)."""
    for _ in range(warmup):
        fn()
    seconds, ratios, rates = [], [], []
    for _ in range(repeat):
        rate = gemm.gflops()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        rates.append(rate)
        ratios.append(work_gflop / elapsed / rate)
    return statistics.median(seconds), statistics.median(ratios), statistics.median(rates)


def inference_call(model, x):
    model.eval()

    def call():
        with torch.inference_mode():
            model(x)

    return call


def train_step_call(model, x):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randint(0, 1000, (x.shape[0],))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), target).backward()
        opt.step()

    return step


def top_ops(model, x, rows: int = 10) -> str:
    model.eval()
    with torch.inference_mode():
        model(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)




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
            gemm = Gemm(repeat=args.gemm_repeat)
            work = 2 * honest.gflops * args.batch_size  # GFLOP of one batch (multiply-adds x 2)
            t_inf, r_inf, rate = interleaved(inference_call(model, x), gemm, work, args.warmup, args.repeat)
            cells[:3] = [f"{rate:.0f}", f"{args.batch_size / t_inf:.2f}", f"{100 * r_inf:.1f}%"]
            if not args.no_train:
                t_train, r_train, _ = interleaved(train_step_call(model, x), gemm, 3 * work, args.warmup, args.repeat)
                cells[3:] = [f"{args.batch_size / t_train:.2f}", f"{100 * r_train:.1f}%"]
            if not args.no_ops:
                breakdowns.append((name, top_ops(model, x)))
            del model
        print(f"| {name} | {honest.params / 1e6:.2f} M | {honest.gflops:.2f} G | {paper.gflops:.2f} G | "
              f"{'—' if top1 is None else f'{top1:.1f}%'} | {' | '.join(cells)} |", flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    for name, table in breakdowns:
        print(f"\n## {name}: top self-time ops of one inference batch\n{table}", flush=True)


if __name__ == "__main__":
    main()
