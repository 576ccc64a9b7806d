"""The channels-last directional scan kernels alone (CPU): the forward (``localmamba::directional_scan_infer``)
and the backward (``localmamba::directional_scan_train_bwd``: re-run forward, adjoint, all gradients
including the low-rank dt projection's), in CPU cycles per 16-lane vector element
(batch * K * L * D * N / 16 elements) at an assumed clock, times the threads used -- the number to
compare with the ~13 vector ops one element of the recurrence costs.

Shapes: the digits recipe's LocalVim layer (``localmamba train``: B=64, K=4, L=64, D=96, N=16,
R=3, LocalVim layout: inputs in sequence order, z read from the in_proj output by token) and a
LocalVim-T layer (B=8, L=197, D=384, R=12). Per thread count, the two kernels are timed
interleaved (median and min of --repeat calls); the thread count is set with
localmamba._C.set_num_threads. A script: it prints, never asserts.

    python bench/channels_last_scan.py [--threads 1 2] [--repeat 9] [--ghz 2.6]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line  # noqa: E402

from localmamba import _C  # noqa: E402
from localmamba.ops.directional_scan_infer import _infer_op  # noqa: E402
from localmamba.ops.directional_scan_train import _bwd_op  # noqa: E402

SHAPES = {"digits LocalVim": (64, 4, 64, 96, 16, 3), "LocalVim-T layer": (8, 4, 197, 384, 16, 12)}


def calls(B, K, L, D, N, R):
    """(forward, backward) closures on random LocalVim-layout inputs (steps = tokens = L)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, K, L, D, generator=g) * 0.5
    dt = torch.randn(B, K, L, R, generator=g) * 0.5
    A = -torch.exp(torch.log(torch.arange(1, N + 1).float()).repeat(K * D, 1) + 0.1 * torch.randn(K * D, N, generator=g))
    Bs, Cs = torch.randn(B, K, L, N, generator=g), torch.randn(B, K, L, N, generator=g)
    z = torch.randn(B, L, 2 * D, generator=g)[..., D:]  # read by token from the in_proj output
    index = torch.stack([torch.randperm(L, generator=g) for _ in range(K)])
    w, Dp = torch.randn(K, D, R, generator=g) * 0.3, torch.randn(K * D, generator=g)
    bias, dout = torch.randn(K * D, generator=g) * 0.5 - 3, torch.randn(B, K, L, D, generator=g)
    fwd = lambda: _infer_op(u, dt, w, A, Bs, Cs, Dp, z, bias, None, index, L, True, True)  # noqa: E731
    bwd = lambda: _bwd_op(u, dt, w, A, Bs, Cs, Dp, z, bias, index, L, True, True, dout)  # noqa: E731
    return fwd, bwd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--ghz", type=float, default=2.6, help="clock used to turn seconds into cycles")
    args = p.parse_args(argv)
    print(machine_line())
    print(f"load average {os.getloadavg()[0]:.1f}; cycles at {args.ghz} GHz x threads per vector element")
    before = _C.get_num_threads()
    try:
        for name, shape in SHAPES.items():
            B, K, L, D, N, R = shape
            elements = B * K * L * D * N / 16
            fwd, bwd = calls(*shape)
            for threads in args.threads:
                _C.set_num_threads(threads)
                fwd(), bwd()  # warm-up
                times = {"fwd": [], "bwd": []}
                for _ in range(args.repeat):
                    for kind, fn in (("fwd", fwd), ("bwd", bwd)):
                        start = time.perf_counter()
                        fn()
                        times[kind].append(time.perf_counter() - start)
                for kind, ts in times.items():
                    med = statistics.median(ts)
                    cycles = med * args.ghz * 1e9 * threads / elements
                    print(f"{name:17s} B={B} K={K} L={L} D={D} N={N} R={R}  {kind}  threads={threads}: "
                          f"median {med * 1e3:7.2f} ms (min {min(ts) * 1e3:7.2f})  {cycles:5.1f} cycles/element")
    finally:
        _C.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
