"""`localmamba eval`: validation loss and top-1/top-5 accuracy of a checkpoint.

A localmamba training checkpoint (run directory, last.pt, best.pt) carries its own config,
so `localmamba eval runs/train-.../` needs nothing else; flags then only change the data or
device. Other weights (an official release .pth, a .safetensors file) need the model and
data given by --config / --model / --dataset / --data-dir."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..train.cli_common import add_config_arguments

    p = subparsers.add_parser("eval", help="evaluate a checkpoint (top-1 / top-5 accuracy)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT_OR_RUN_DIR")
    add_config_arguments(p, "digits/local_vim", training=False)
    p.add_argument("--ema", action="store_true", help="evaluate the checkpoint's EMA weights")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE as JSON")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from ..train.cli_common import run_cli

    def go() -> int:
        import json
        from pathlib import Path

        from ..train.config import apply_overrides, load_config, validate_config
        from ..train.cli_common import config_from_args
        from ..train.engine import run_evaluation

        src = Path(args.checkpoint).expanduser()
        if src.is_dir():
            src = src / ("best.pt" if (src / "best.pt").exists() and not (src / "last.pt").exists() else "last.pt")
        if not src.is_file():
            raise FileNotFoundError(f"checkpoint {str(src)!r} not found")
        cfg = config_from_args(args, "digits/local_vim")
        result = run_evaluation(cfg, str(src), ema=args.ema, user_config=bool(args.config), args=args)
        if args.print_config:
            return 0
        line = (f"{result['checkpoint']}: top-1 {result['acc1']:.2f}%  top-5 {result['acc5']:.2f}%  "
                f"loss {result['loss']:.4f}  ({result['count']} images, {result['dataset']})")
        print(line, flush=True)
        if args.json:
            from ..train.checkpoint import atomic_write_bytes

            atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
        return 0

    return run_cli(go, args)
