"""Selective scan: ours (native kernels) against the sequential pure-PyTorch reference, in
one run, at the LocalVim-T shape and the LocalVMamba-T stage-1 shape.

    python bench/selective_scan.py [--threads 2] [--repeat 7] [--reference-repeat 3] [--shapes 0 1]
                                   [--skip-large-reference]

CPU: forward and forward+backward time, speedup over the reference, achieved GFLOP/s
(9*B*D*L*N per forward, the release's convention) against the machine's measured fp32
GEMM rate, and the bytes each implementation keeps for the backward (beyond its inputs).
GPU (only where a device exists): time and achieved GB/s against a measured
device-to-device copy. Prints measurements; never asserts.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line, time_call  # noqa: E402

import localmamba  # noqa: E402
from localmamba import _C  # noqa: E402
from localmamba.ops import reference, selective_scan  # noqa: E402

# (label, B, D, L, N, G)
SHAPES = [
    ("LocalVim-T (B=8 D=384 L=197 N=16)", 8, 384, 197, 16, 1),
    ("LocalVMamba-T stage 1 (B=8 KD=768 L=3136 N=16 G=4)", 8, 768, 3136, 16, 4),
]


def make_inputs(B, D, L, N, G, device, dtype=torch.float32):
    bc = (B, G, N, L) if G > 1 else (B, N, L)
    return dict(
        u=torch.randn(B, D, L, device=device, dtype=dtype),
        delta=(0.5 * torch.rand(B, D, L, device=device)).to(dtype),
        A=-torch.rand(D, N, device=device) - 0.05,
        B=torch.randn(bc, device=device, dtype=dtype),
        C=torch.randn(bc, device=device, dtype=dtype),
        D=torch.randn(D, device=device),
        z=torch.randn(B, D, L, device=device, dtype=dtype),
        delta_bias=torch.rand(D, device=device) - 0.5,
    )


def call(inputs, backend):
    i = inputs
    return selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"], True,
                          backend=backend)


def saved_bytes(inputs, backend) -> int:
    """Bytes of the tensors autograd keeps for the backward, not counting the inputs."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    input_ptrs = {v.untyped_storage().data_ptr() for v in leaves.values()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in input_ptrs:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = call(leaves, backend)
    del out
    return sum(seen.values())


def measured_gemm_gflops(device: str) -> float:
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t = time_call(lambda: torch.mm(a, b), warmup=1, repeat=5, sync=sync)["min_s"]
    return 2 * n**3 / t / 1e9


def fwd_bwd_fn(inputs, backend):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    dout = torch.randn_like(inputs["u"])  # dense, like a real upstream gradient

    def run():
        for v in leaves.values():
            v.grad = None
        call(leaves, backend).backward(dout)

    return run


def run_cpu(args) -> None:
    torch.set_num_threads(args.threads)
    _C.set_num_threads(args.threads)
    peak = measured_gemm_gflops("cpu")
    print(f"[cpu] {machine_line()}; selective scan ISA {_C.selective_scan_cpu_isa()}")
    print(f"measured peak (fp32 GEMM, torch.mm 2048^3, {args.threads} threads): {peak:.1f} GFLOP/s")
    print(f"{'shape':52s} {'path':10s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'fwd GFLOP/s':>12s} {'% peak':>7s} "
          f"{'saved MB':>9s} {'fwd x':>7s} {'fwd+bwd x':>10s}")
    for index, (label, B, D, L, N, G) in enumerate(SHAPES):
        if args.shapes and index not in args.shapes:
            continue
        inputs = make_inputs(B, D, L, N, G, "cpu")
        flops = 9 * B * D * L * N
        rows = {}
        for backend in ("native", "reference"):
            large = L > 1000
            if backend == "reference" and large and args.skip_large_reference:
                continue
            repeat = args.repeat if backend == "native" else args.reference_repeat
            warmup = 2 if backend == "native" else 1
            if backend == "reference" and large:  # seconds per call and several GB: one timed call
                repeat, warmup = 1, 0
            with torch.no_grad():
                t_f = time_call(lambda: call(inputs, backend), warmup=warmup, repeat=repeat)["median_s"]
            t_fb = time_call(fwd_bwd_fn(inputs, backend), warmup=warmup, repeat=repeat)["median_s"]
            rows[backend] = (t_f, t_fb, saved_bytes(inputs, backend))
        for backend, (t_f, t_fb, saved) in rows.items():
            gf = flops / t_f / 1e9
            if "reference" in rows:
                sp_f = rows["reference"][0] / t_f
                sp_fb = rows["reference"][1] / t_fb
                speed = f"{sp_f:7.1f} {sp_fb:10.1f}"
            else:
                speed = f"{'-':>7s} {'-':>10s}"
            print(f"{label:52s} {backend:10s} {t_f * 1e3:9.2f} {t_fb * 1e3:11.2f} {gf:12.2f} {100 * gf / peak:6.1f}% "
                  f"{saved / 2**20:9.1f} {speed}")


def run_gpu(args) -> None:
    if not (torch.cuda.is_available() and _C.cuda_device_count() > 0):
        print(f"\n[gpu] skipped: {_C.cuda_status()}")
        return
    sync = torch.cuda.synchronize
    print(f"\n[gpu] {torch.cuda.get_device_name()}")
    big = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(big)
    t_copy = time_call(lambda: dst.copy_(big), repeat=10, sync=sync)["min_s"]
    copy_bw = 2 * big.numel() / t_copy / 1e9
    print(f"measured device-to-device copy: {copy_bw:.0f} GB/s (read + write)")
    print(f"{'shape':52s} {'dtype':9s} {'fwd ms':>8s} {'fwd GB/s':>9s} {'% copy':>7s} {'fwd+bwd ms':>11s} {'ref fwd ms':>11s}")
    for label, B, D, L, N, G in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            inputs = make_inputs(B, D, L, N, G, "cuda", dtype)
            e = torch.tensor([], dtype=dtype).element_size()
            # Forward traffic: read u, delta, z, B, C; write y.
            moved = e * (4 * B * D * L + 2 * B * G * N * L)
            with torch.no_grad():
                t_f = time_call(lambda: call(inputs, "native"), repeat=args.repeat, sync=sync)["median_s"]
                t_ref = time_call(lambda: call(inputs, "reference"), warmup=1, repeat=1, sync=sync)["median_s"]
            t_fb = time_call(fwd_bwd_fn(inputs, "native"), repeat=args.repeat, sync=sync)["median_s"]
            bw = moved / t_f / 1e9
            print(f"{label:52s} {str(dtype)[6:]:9s} {t_f * 1e3:8.3f} {bw:9.0f} {100 * bw / copy_bw:6.1f}% "
                  f"{t_fb * 1e3:11.3f} {t_ref * 1e3:11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reference-repeat", type=int, default=3)
    parser.add_argument("--shapes", type=int, nargs="*", default=None, help="indices into SHAPES to run (default all)")
    parser.add_argument("--skip-large-reference", action="store_true",
                        help="skip the (slow, several-GB) reference at the LocalVMamba stage-1 shape")
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                        help="which sections to run (cuda: the GPU section only, as scripts/gpu_check.sh does)")
    args = parser.parse_args()
    print(f"localmamba {localmamba.__version__ if hasattr(localmamba, '__version__') else ''}".strip())
    if args.device in ("cpu", "all"):
        run_cpu(args)
    if args.device in ("cuda", "all"):
        run_gpu(args)


if __name__ == "__main__":
    main()
