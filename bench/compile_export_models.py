"""Checks every released model (the release's five architectures, or the models named) with torch.compile, torch.export and ONNX at
full size, and prints one table row per check as it finishes. A script, not a test (CI checks the
*_test variants and one released model at a small input: tests/python/test_compile_export.py,
test_onnx_export.py).

Checks (``--checks``; each compares with eager PyTorch under tests/python/_tolerance.py's rules):

* ``compile``: torch.compile(fullgraph=True) from a cold start, inference (no_grad) and one
  training step (output and input gradient), dynamic=False and dynamic=True, at two image sizes.
  Backend ``--backend`` (default aot_eager: Dynamo + AOTAutograd capture; inductor adds
  code generation, minutes per model on a few cores).
* ``export``: torch.export.export of the inference forward, save / load round trip.
* ``onnx``: ``localmamba export``'s ONNX file run by onnxruntime (CPU) within 1e-4, and the
  per-image time of onnxruntime and of eager PyTorch (batch 1, median of --repeat runs).

    python bench/compile_export_models.py                         # the released models, all checks
    python bench/compile_export_models.py local_vim_tiny --checks onnx export
"""
from __future__ import annotations

import argparse
import datetime
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from common import machine_line, time_call  # noqa: E402
from _tolerance import RULES  # noqa: E402

import localmamba  # noqa: E402
from localmamba.models import get_model_cfg, list_models  # noqa: E402

CHECKS = ("compile", "export", "onnx")


def _err(got: torch.Tensor, want: torch.Tensor, rule: str) -> str:
    """'ok' / 'FAIL' under a tolerance rule, with the largest error relative to max|want|."""
    rtol, atol = RULES[rule]
    got, want = got.detach().double(), want.detach().double()
    bound = atol * want.abs().max().clamp_min(1e-30) + rtol * want.abs()
    err = (got - want).abs()
    rel = float(err.max() / want.abs().max().clamp_min(1e-30))
    return f"{'ok' if bool((err <= bound).all()) else 'FAIL'} (max err {rel:.1e} of max|y|)"


def _train_outputs(model, x):
    torch.manual_seed(1)
    y = model(x)
    (g,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), x)
    return y, g


def check_compile(name, sizes, backend):
    for train in (False, True):
        for dynamic in (False, True):
            torch.manual_seed(0)
            model = localmamba.create_model(name).train(train)
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True, dynamic=dynamic, backend=backend)
            for size in sizes:
                x = torch.randn(1, 3, size, size, requires_grad=train)
                start = time.perf_counter()
                if train:
                    results = list(zip(_train_outputs(compiled, x), _train_outputs(model, x)))
                else:
                    with torch.no_grad():
                        results = [(compiled(x), model(x))]
                verdict = "; ".join(_err(g, w, "compile") for g, w in results)
                mode = "train (y, dx)" if train else "inference"
                yield (f"compile {backend} {mode} dynamic={dynamic} {size}x{size}", verdict,
                       f"{time.perf_counter() - start:.0f}s (compile + run)")


def check_export(name, size):
    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    x = torch.randn(1, 3, size, size)
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        buf = io.BytesIO()
        torch.export.save(program, buf)
        buf.seek(0)
        got = torch.export.load(buf).module()(x)
        verdict = _err(got, model(x), "compile")
    yield f"torch.export save/load {size}x{size}", verdict, f"{time.perf_counter() - start:.0f}s"


def check_onnx(name, size, repeat):
    import onnxruntime

    from localmamba.export.onnx import export_onnx

    torch.manual_seed(0)
    model = localmamba.create_model(name).eval()
    x = torch.randn(1, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        start = time.perf_counter()
        export_onnx(model, x, path)
        export_s = time.perf_counter() - start
        mib = path.stat().st_size / 2**20
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {"image": x.numpy()}
        with torch.no_grad():
            want = model(x)
            verdict = _err(torch.from_numpy(session.run(None, feed)[0]), want, "onnx")
            ort = time_call(lambda: session.run(None, feed), warmup=1, repeat=repeat)["median_s"]
            eager = time_call(lambda: model(x), warmup=1, repeat=repeat)["median_s"]
    yield (f"onnx {size}x{size} (onnxruntime CPU)", verdict,
           f"export {export_s:.0f}s, {mib:.0f} MiB; onnxruntime {ort * 1e3:.0f} ms/img vs PyTorch {eager * 1e3:.0f} ms/img")


def main(argv=None) -> int:
    # the release's five architectures (the models with a paper accuracy); any registered name can be given
    released = [n for n in list_models() if get_model_cfg(n)["paper_top1"]]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=released, help="model names (default: every released model)")
    p.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    p.add_argument("--sizes", type=int, nargs=2, default=[224, 256], help="the two image sizes of the compile check")
    p.add_argument("--backend", default="aot_eager", help="torch.compile backend (default aot_eager)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per ONNX timing (median)")
    args = p.parse_args(argv)
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M}; {machine_line()}")
    print("| model | check | result | cost |\n|---|---|---|---|", flush=True)
    size = args.sizes[0]
    for name in args.models:
        runs = {"compile": lambda: check_compile(name, args.sizes, args.backend),
                "export": lambda: check_export(name, size), "onnx": lambda: check_onnx(name, size, args.repeat)}
        for check in args.checks:
            try:
                for what, verdict, cost in runs[check]():
                    print(f"| {name} | {what} | {verdict} | {cost} |", flush=True)
            except Exception as exc:  # a failing check is a row of the table, the others still run
                print(f"| {name} | {check} | FAIL: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} | |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
