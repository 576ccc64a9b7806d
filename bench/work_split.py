"""Work split of the CPU inference kernels: units per call and how busy P cores are kept.

    python bench/work_split.py                          # the released models, batch 8 and 1, 2 and 16 cores
    python bench/work_split.py --models local_vim_tiny --batch-sizes 8 --cores 2 4 16

Every native inference kernel (the channels-last directional scan, LocalVim's scan conv, SCAttn's
statistics, the gated merge) splits its work into units that depend on the shapes only, and
``parallel_for`` gives each of P threads one contiguous run of ceil(units / P) of them. So a call
keeps units / (P * ceil(units / P)) of P equal cores busy; that share is what this prints, per
kernel and distinct call shape, from the unit counts of one real forward at batch 1 (every
kernel's units are proportional to the batch). Nothing is timed: P = 16 is a simulation of the
unit counts, valid on any machine.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from localmamba import _C  # noqa: E402
from localmamba.models import create_model  # noqa: E402

RELEASED = ["local_vim_tiny", "local_vim_tiny_middle_cls_token", "local_vim_small", "local_vssm_tiny", "local_vssm_small"]
KERNELS = {  # native entry point -> its unit count function
    "directional_scan_infer": "directional_scan_infer_units",
    "scan_conv_infer": "scan_conv_infer_units",
    "gate_stats_infer": "gate_stats_infer_units",
    "gated_merge_infer": "gated_merge_infer_units",
}


def units_per_call(name: str, img_size: int):
    """[(kernel, units at batch 1, shape key)] for one no-grad forward of model `name` at batch 1."""
    calls = []
    originals = {k: getattr(_C, k) for k in KERNELS}

    def recorder(kernel):
        def run(params):
            shape = (params.num_directions, params.dim, getattr(params, "length", params.num_tokens))
            calls.append((kernel, getattr(_C, KERNELS[kernel])(params), shape))
            return originals[kernel](params)
        return run

    model = create_model(name).eval()
    try:
        for k in KERNELS:
            setattr(_C, k, recorder(k))
        with torch.no_grad():
            model(torch.randn(1, 3, img_size, img_size))
    finally:
        for k, fn in originals.items():
            setattr(_C, k, fn)
    return calls


def busy(units: int, cores: int) -> float:
    return units / (cores * math.ceil(units / cores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=RELEASED)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 1])
    ap.add_argument("--cores", nargs="+", type=int, default=[2, 16])
    args = ap.parse_args()
    cols = " | ".join(f"busy on {p} cores" for p in args.cores)
    print(f"| model | kernel | (K, dim, steps) | calls | batch | units | {cols} |")
    print("|---|---|---|---|---|---|" + "---|" * len(args.cores))
    for name in args.models:
        groups = collections.Counter((k, u, s) for k, u, s in units_per_call(name, args.img_size))
        for (kernel, u1, shape), count in sorted(groups.items(), key=lambda kv: (list(KERNELS).index(kv[0][0]), -kv[0][1])):
            for b in args.batch_sizes:
                shares = " | ".join(f"{100 * busy(u1 * b, p):.0f} %" for p in args.cores)
                print(f"| {name} | {kernel} | {shape} | {count} | {b} | {u1 * b} | {shares} |", flush=True)


if __name__ == "__main__":
    main()
