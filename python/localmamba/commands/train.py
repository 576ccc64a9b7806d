"""`localmamba train`: train a model from a YAML recipe (default: a small LocalVim on the
embedded handwritten-digits dataset, a few minutes on a CPU)."""
from __future__ import annotations

import argparse

DEFAULT_CONFIG = "digits/local_vim"

EPILOG = """examples:
  localmamba train                                    # small LocalVim on the embedded digits, CPU
  localmamba train -c imagenet/local_vim_tiny --data-dir /data/imagenet
  torchrun --nproc_per_node 8 -m localmamba train -c imagenet/local_vssm_tiny --data-dir /data/imagenet
  localmamba train --directions runs/search-.../directions.json
  localmamba train --resume runs/train-.../           # continue exactly where it stopped
  localmamba train optim.lr=5e-4 aug.mixup=0.8 train.ema=true
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (YAML config + overrides)", description=__doc__,
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add(p, DEFAULT_CONFIG)
    p.set_defaults(func=lambda args: _main(args, "train", DEFAULT_CONFIG))


def _add(p, default_config: str) -> None:
    from ..train.cli_common import add_config_arguments

    add_config_arguments(p, default_config)
    p.add_argument("--resume", metavar="CKPT_OR_DIR", default=None,
                   help="continue a run from its last.pt (or the given checkpoint) with its own config")


def _main(args, command: str, default_config: str) -> int:
    from ..train.cli_common import config_from_args, print_config, run_cli

    def go() -> int:
        from ..train.engine import run_training

        cfg = config_from_args(args, default_config)
        if args.print_config:
            print_config(cfg)
            return 0
        run_training(cfg, command=command, resume=args.resume)
        return 0

    return run_cli(go, args)
