"""LocalVim's conv step in training, forward + backward: the gather + causal_depthwise_conv1d_channels_last
path (nn/scan.py) against the fused op ops.scan_conv_train.scan_conv_channels_last_train (on the slice
xz[..., :Di], and on the whole xz with x_prefix=True), interleaved in one process (timings on shared
machines are noisy: read the ratios), at 1 and 2 threads. Every variant also sends a gradient into z =
xz[..., Di:] (as the scan does), so xz's gradient is assembled the way the mixer assembles it.

    python bench/scan_conv_train.py [--batch 64] [--dim 96] [--grid 8 8] [--taps 4] [--reps 30] [--clock cpu]

--clock cpu times with the process's CPU time instead of the wall clock: robust to waiting for a core
on a loaded machine, meaningful at 1 thread only (at 2 it adds both threads' time, spinning included).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from localmamba import _C
from localmamba.nn.scan import causal_depthwise_conv1d_channels_last
from localmamba.ops import scan_index_table
from localmamba.ops.scan_conv_train import scan_conv_channels_last_train

DIRECTIONS = ("h", "v_flip", "w2", "w2_flip")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--grid", type=int, nargs=2, default=(8, 8))
    ap.add_argument("--taps", type=int, default=4)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    index = scan_index_table(DIRECTIONS, *args.grid)
    K, L = index.shape
    T, Di, B = args.grid[0] * args.grid[1], args.dim, args.batch
    g = torch.Generator().manual_seed(0)
    xz = torch.randn(B, T, 2 * Di, generator=g).requires_grad_()
    w = (0.5 * torch.randn(K, Di, args.taps, generator=g)).requires_grad_()  # MultiMamba's stacked conv weight
    b = torch.randn(K, Di, generator=g).requires_grad_()
    dy = torch.randn(B, K, L, Di, generator=g)
    dz = torch.randn(B, T, Di, generator=g)

    def old():
        x = xz[:, index.clamp_min(0).reshape(-1), :Di].view(B, K, L, Di)
        if L > T:
            x = x * (index >= 0).to(x.dtype).view(1, K, L, 1)
        u = causal_depthwise_conv1d_channels_last(x, w, b, silu=True)
        torch.autograd.backward([u, xz[..., Di:]], [dy, dz])

    def new():
        u = scan_conv_channels_last_train(xz[..., :Di], index, w.transpose(1, 2), b)
        torch.autograd.backward([u, xz[..., Di:]], [dy, dz])

    def new_prefix():
        u = scan_conv_channels_last_train(xz, index, w.transpose(1, 2), b, x_prefix=True)
        torch.autograd.backward([u, xz[..., Di:]], [dy, dz])

    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"B={B} K={K} L={L} T={T} Di={Di} taps={args.taps} float32, forward + backward, median of {args.reps}, "
          f"{args.clock} clock")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        _C.set_num_threads(threads)
        variants = {"old": old, "new": new, "new x_prefix": new_prefix}
        times = {name: [] for name in variants}
        for fn in list(variants.values()) * 2:  # warm-up
            fn()
        for _ in range(args.reps):
            for name, fn in variants.items():
                xz.grad = w.grad = b.grad = None
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        print(f"threads={threads}: " + ", ".join(f"{name} {v:.2f} ms" for name, v in ms.items()) + "; old/new "
              + ", ".join(f"{ms['old'] / v:.2f}x ({name})" for name, v in ms.items() if name != "old"))


if __name__ == "__main__":
    main()
