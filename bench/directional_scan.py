"""One LocalVMamba SS2D layer, forward + backward: the fused directional scan against the
composition it replaces (local_scan -> selective_scan -> local_reverse, the same native kernels),
at the LocalVMamba-T stage shapes (B=8; 56², 28², 14², 7²; D = 2·dim; K = 4 with the directions of
a released layer). Paths: "composition" (the layer before fusion), "fused-scan" (fused scan, the
channel gate and sum as module calls), "fused" (the layer as shipped: fused scan + the gated sum
that keeps no extra (B, K, L, D) tensor).

Time: median of --repeat forward+backward passes of the whole layer, the paths interleaved. Peak memory: on CPU, the
growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
resident set before the pass, measured in a fresh subprocess per (stage, path) after one warm-up
pass, with glibc's mmap threshold pinned so freed tensors go back to the OS -- it counts every
byte the pass touches, kernel scratch included; on CUDA, torch.cuda.max_memory_allocated over the
allocation before the pass.

    python bench/directional_scan.py [--device cpu|cuda] [--batch 8] [--repeat 5] [--stages 1,2,3,4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_line  # noqa: E402

from localmamba.models._directions import LOCAL_VSSM_TINY  # noqa: E402
from localmamba.nn.mixers import SS2D, _dense  # noqa: E402
from localmamba.ops import local_reverse, local_scan, selective_scan  # noqa: E402

# (stage, grid, dim, index of the layer whose directions we use): LocalVMamba-T, 224² input.
STAGES = {1: (56, 96, 0), 2: (28, 192, 2), 3: (14, 384, 4), 4: (7, 768, 13)}


class CompositionSS2D(SS2D):
    """SS2D with the pre-fusion forward_core: K reordered copies in, K copies out."""

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        B, Di, H, W = x.shape
        K, N, R = self.num_directions, self.d_state, self.dt_rank
        backend = self._backend()
        dirs = self.directions
        xs = local_scan(x, dirs, H, W, layout="BCHW", backend=backend)  # (B, K, Di, Lmax)
        L = xs.shape[-1]
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        ys = selective_scan(
            _dense(xs.reshape(B, K * Di, L), xs.dtype), _dense(dts.reshape(B, K * Di, L), xs.dtype),
            -torch.exp(self.A_logs.float()), _dense(Bs, xs.dtype), _dense(Cs, xs.dtype), D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(), delta_softplus=True, backend=backend,
        ).view(B, K, Di, L)
        y = local_reverse(ys, dirs, H, W, layout="BLC", backend=backend)  # (B, K, HW, Di)
        y = self.multi_scan.merge(self.multi_scan.attn(y))
        return self.out_norm(y)


class FusedScanOnlySS2D(SS2D):
    """SS2D with the fused scan but the channel gate and sum as separate module calls (isolates the
    scan's share of the saving from the gated sum's)."""

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        from localmamba.nn.scan import directional_selective_scan

        B, Di, H, W = x.shape
        N, R = self.d_state, self.dt_rank
        xs = x.reshape(B, Di, H * W)
        x_dbl = torch.einsum("bdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
        y = directional_selective_scan(
            xs, dts, -torch.exp(self.A_logs.float()), Bs, Cs, self.directions, H, W, D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(), dt_proj_weight=self.dt_projs_weight, layout="BLC",
            backend=self._backend(),
        )
        return self.out_norm(self.multi_scan.merge(self.multi_scan.attn(y)))


PATHS = {"composition": CompositionSS2D, "fused-scan": FusedScanOnlySS2D, "fused": SS2D}


def build(stage: int, path: str, batch: int, device: str):
    grid, dim, layer = STAGES[stage]
    torch.manual_seed(0)
    cls = PATHS[path]
    layer_mod = cls(dim, LOCAL_VSSM_TINY[layer], backend="native").to(device)
    x = torch.randn(batch, grid, grid, dim, device=device, requires_grad=True)
    return layer_mod, x


def fwd_bwd(layer_mod, x):
    layer_mod(x).sum().backward()


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_peak(stage: int, path: str, batch: int) -> None:
    """Runs in a fresh process: prints the peak RSS growth (bytes) of one forward+backward."""
    layer_mod, x = build(stage, path, batch, "cpu")
    fwd_bwd(layer_mod, x)  # warm-up: lazy initialisation, thread pool, gradient buffers
    layer_mod.zero_grad(set_to_none=False)
    x.grad = torch.zeros_like(x)
    base = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    fwd_bwd(layer_mod, x)
    print(json.dumps({"peak_bytes": (_rss_kib("VmHWM") - base) * 1024}))


def cpu_peak(stage: int, path: str, batch: int) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, __file__, "--child", f"{stage},{path},{batch}"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def cuda_peak(stage: int, path: str, batch: int) -> int:
    layer_mod, x = build(stage, path, batch, "cuda")
    fwd_bwd(layer_mod, x)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwd_bwd(layer_mod, x)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stages", default="1,2,3,4")
    ap.add_argument("--threads", type=int, default=None, help="torch and localmamba CPU threads")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import localmamba

        torch.set_num_threads(args.threads)
        localmamba._C.set_num_threads(args.threads)
    if args.child:
        stage, path, batch = args.child.split(",")
        child_peak(int(stage), path, int(batch))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible to torch")
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    where = machine_line() if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"[{args.device}] {where}; batch {args.batch}")
    print(f"{'stage':>5s} {'grid':>6s} {'D':>5s} {'directions':28s} {'path':12s} {'fwd+bwd ms':>11s} "
          f"{'peak MiB':>9s} {'time x':>7s} {'mem x':>6s}")
    for stage in (int(s) for s in args.stages.split(",")):
        grid, dim, layer = STAGES[stage]
        built = {path: build(stage, path, args.batch, args.device) for path in PATHS}
        for layer_mod, x in built.values():
            fwd_bwd(layer_mod, x)  # warm-up
        sync()
        samples = {path: [] for path in PATHS}
        for _ in range(args.repeat):  # interleaved, so load changes on a shared machine hit every path alike
            for path, (layer_mod, x) in built.items():
                start = time.perf_counter()
                fwd_bwd(layer_mod, x)
                sync()
                samples[path].append(time.perf_counter() - start)
        del built
        res = {}
        for path in PATHS:
            peak = cpu_peak(stage, path, args.batch) if args.device == "cpu" else cuda_peak(stage, path, args.batch)
            res[path] = (statistics.median(samples[path]), peak)
        for path in PATHS:
            t, peak = res[path]
            tx = res["composition"][0] / t
            mx = peak / res["composition"][1]
            print(f"{stage:5d} {f'{grid}x{grid}':>6s} {2 * dim:5d} {','.join(LOCAL_VSSM_TINY[layer]):28s} {path:12s} "
                  f"{t * 1e3:11.1f} {peak / 2**20:9.1f} {tx:7.2f} {mx:6.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
