"""The `localmamba` command. Each subcommand lives in its own module under
localmamba.commands and exposes `register(subparsers)`; it sets `func` on its parser."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import List, Optional

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmamba", description="LocalMamba: windowed-scan vision SSMs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = int(args.func(args) or 0)
    if _is_distributed_worker():
        _exit_distributed_worker(result)
    return result


def _is_distributed_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _exit_distributed_worker(code: int) -> None:
    """Ends a torchrun worker once its work is done (process group destroyed, files closed).

    Interpreter teardown of a gloo worker intermittently aborts with "terminate called without an
    active exception" (a transport thread still joinable while C++ statics are destroyed), which
    makes torchrun fail a run that finished. Nothing is left to clean up at this point, so the
    worker flushes its streams and leaves without running the teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
