"""`localmamba export`: write a model's inference graph as ONNX (for onnxruntime, TensorRT, ...) or
as a torch.export program (.pt2), for a fixed input size.

ONNX files hold standard ONNX operators only (opset 18): the model is captured on its inference
path and localmamba's scan kernel is written as an ONNX Scan loop over the sequence (graph size
independent of the sequence length; see localmamba.export.onnx), so no custom operator is needed
at run time. The .pt2 program keeps the native kernels (localmamba's custom ops: load it where
localmamba is installed). After writing, the file is run once (onnxruntime on CPU /
torch.export.load) and its largest difference from PyTorch is printed.

    localmamba export local_vssm_test --format onnx --img-size 32 32 -o vssm.onnx
    localmamba export local_vim_tiny --checkpoint local_vim_tiny.ckpt --format pt2 --img-size 224 224 -o vim.pt2
"""
from __future__ import annotations

import argparse
from pathlib import Path

def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a model as ONNX or a torch.export program",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="registered model name (localmamba info lists them)")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="weights to export: a run folder / file written by localmamba train, or a release .ckpt/.pth")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx", help="output format (default onnx)")
    p.add_argument("--img-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="input height and width (default: the model's input size)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size of the exported graph (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument("--no-check", action="store_true", help="skip running the written file against PyTorch")
    p.set_defaults(func=main)


def _build(args):
    from ..errors import UserError
    from ..models import create_model, get_model_cfg

    try:
        cfg = get_model_cfg(args.model)
    except ValueError as exc:
        raise UserError(f"MODEL {args.model}: {exc}") from None
    if args.checkpoint is None:
        return create_model(args.model), cfg
    from ..train.artifacts import load_weights, open_checkpoint

    ck = open_checkpoint(args.checkpoint, "--checkpoint")
    model = create_model(args.model, num_classes=_num_classes(ck, cfg))
    load_weights(model, ck, args.model)
    return model, cfg


def _num_classes(ck, cfg) -> int:
    recorded = getattr(ck, "recorded", None) or {}
    return int(recorded.get("data", {}).get("num_classes") or cfg["num_classes"])


def export_onnx(model, example, path: Path) -> None:
    from ..export.onnx import export_onnx as write

    write(model, example, path)


def export_pt2(model, example, path: Path) -> None:
    import torch

    with torch.no_grad():  # the inference path: forward-only kernels
        program = torch.export.export(model.eval(), (example,))
    torch.export.save(program, str(path))


def check_file(fmt: str, path: Path, model, example) -> float:
    """Runs the written file on ``example`` and returns its max abs difference from PyTorch eager."""
    import numpy as np
    import torch

    with torch.no_grad():
        expected = model.eval()(example)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
        return float(np.abs(got - expected.numpy()).max())
    with torch.no_grad():
        got = torch.export.load(str(path)).module()(example)
    return float((got - expected).abs().max())


def main(args) -> int:
    import time

    import torch

    from ..errors import UserError

    model, cfg = _build(args)
    H, W = args.img_size or cfg["input_size"][-2:]
    if H < 1 or W < 1 or args.batch_size < 1:
        raise UserError(f"--img-size {H} {W} / --batch-size {args.batch_size}: must be positive")
    example = torch.randn(args.batch_size, model.in_chans, H, W, generator=torch.Generator().manual_seed(0))
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"--output {out}: folder {out.parent} does not exist")
    start = time.perf_counter()
    (export_onnx if args.format == "onnx" else export_pt2)(model, example, out)
    print(f"wrote {out} ({args.format}, input {args.batch_size}x{model.in_chans}x{H}x{W}, "
          f"{out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f}s")
    if not args.no_check:
        err = check_file(args.format, out, model, example)
        print(f"checked: max |{'onnxruntime' if args.format == 'onnx' else 'torch.export.load'} - PyTorch| = {err:.2e}")
    return 0
