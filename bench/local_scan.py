"""CPU (and, where present, GPU) time of local_scan + local_reverse at LocalVMamba shapes,
ours (native) against the pure-PyTorch reference, both measured in one run.

    python bench/local_scan.py [--threads 2] [--repeat 7]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line, time_call  # noqa: E402

import localmamba  # noqa: E402
from localmamba.ops import local_reverse, local_scan, scan_length  # noqa: E402

# (label, B, C, H, W, directions): LocalVMamba-T stage 1 block 0 and stage 4 block 13.
SHAPES = [
    ("56x56 h,h_flip,w7,w7_flip", 16, 192, 56, 56, ["h", "h_flip", "w7", "w7_flip"]),
    ("7x7 h_flip,v_flip,w2_flip,w7_flip", 16, 192, 7, 7, ["h_flip", "v_flip", "w2_flip", "w7_flip"]),
]


def bytes_moved(B, C, H, W, directions, itemsize):
    """Hand count: scan reads B*C*H*W once per direction and writes B*K*C*Lmax; the summed
    reverse reads every real token of the K sequences and writes B*C*H*W."""
    K = len(directions)
    lmax = max(scan_length(d, H, W) for d in directions)
    scan = (K * B * C * H * W + B * K * C * lmax) * itemsize
    reverse = (K * B * C * H * W + B * C * H * W) * itemsize
    return scan, reverse


def run(device: str, repeat: int) -> None:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"\n[{device}] {machine_line() if device == 'cpu' else torch.cuda.get_device_name()}")
    header = f"{'shape':36s} {'path':10s} {'scan ms':>9s} {'GB/s':>6s} {'reverse ms':>11s} {'GB/s':>6s} {'fwd+bwd ms':>11s} {'speedup':>8s}"
    print(header)
    for label, B, C, H, W, directions in SHAPES:
        x = torch.randn(B, C, H, W, device=device)
        scan_bytes, reverse_bytes = bytes_moved(B, C, H, W, directions, x.element_size())
        results = {}
        for backend in ("native", "reference"):
            y = local_scan(x, directions, H, W, backend=backend)
            t_scan = time_call(lambda: local_scan(x, directions, H, W, backend=backend), repeat=repeat, sync=sync)
            t_rev = time_call(lambda: local_reverse(y, directions, H, W, reduce="sum", backend=backend), repeat=repeat, sync=sync)
            xg = x.clone().requires_grad_(True)

            def fwd_bwd():
                out = local_reverse(local_scan(xg, directions, H, W, backend=backend), directions, H, W, reduce="sum", backend=backend)
                out.backward(torch.ones_like(out))

            t_fb = time_call(fwd_bwd, repeat=repeat, sync=sync)
            results[backend] = (t_scan["median_s"], t_rev["median_s"], t_fb["median_s"])
        for backend in ("native", "reference"):
            s, r, fb = results[backend]
            speed = results["reference"][2] / fb
            print(
                f"{label:36s} {backend:10s} {s * 1e3:9.2f} {scan_bytes / s / 1e9:6.1f} {r * 1e3:11.2f} "
                f"{reverse_bytes / r / 1e9:6.1f} {fb * 1e3:11.2f} {speed:7.1f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and localmamba")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        localmamba._C.set_num_threads(args.threads)
    if args.device in ("cpu", "all"):
        run("cpu", args.repeat)
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available() and localmamba._C.cuda_device_count() > 0:
            run("cuda", args.repeat)
        else:
            print(f"\n[cuda] skipped: {localmamba._C.cuda_status()}")


if __name__ == "__main__":
    main()
