"""`localmamba eval`: validation loss and top-1/top-5 accuracy of a checkpoint.

What `localmamba train` writes rebuilds its own model: a run folder, last.pt / best.pt (they
carry the run's config) and its .safetensors files (they record the architecture, and the
run's config.yaml sits beside them), so `localmamba eval runs/train-.../` needs nothing else;
flags then only change the data or device, and a flag that would build another model is an
error. Other weights (an official release .pth) need --model and the data flags or -c."""
from __future__ import annotations

import argparse

DEFAULT_CONFIG = "digits/local_vim"


def register(subparsers) -> None:
    from ..train.cli_common import add_config_arguments

    p = subparsers.add_parser("eval", help="evaluate a checkpoint (top-1 / top-5 accuracy)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT_OR_RUN_DIR")
    add_config_arguments(p, DEFAULT_CONFIG, training=False)
    p.add_argument("--ema", action="store_true", help="evaluate the run's EMA weights (runs trained with --ema)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to FILE as JSON")
    p.set_defaults(func=_main)


def _main(args) -> int:
    from ..train.cli_common import run_cli

    def go() -> int:
        import json

        from ..atomic_files import atomic_write_bytes
        from ..train.artifacts import open_checkpoint
        from ..train.cli_common import print_config
        from ..train.evaluation import eval_config, run_evaluation

        ck = open_checkpoint(args.checkpoint, "CKPT_OR_RUN_DIR", prefer_ema=args.ema)
        cfg = eval_config(ck, args, DEFAULT_CONFIG)
        if args.print_config:
            print_config(cfg)
            return 0
        result = run_evaluation(cfg, ck, ema=args.ema)
        print(f"{result['checkpoint']}: top-1 {result['acc1']:.2f}%  top-5 {result['acc5']:.2f}%  "
              f"loss {result['loss']:.4f}  ({result['count']} images, {result['dataset']})", flush=True)
        if args.json:
            atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
        return 0

    return run_cli(go, args)
