"""The `localmamba` command. Each subcommand lives in its own module under
localmamba.commands and exposes `register(subparsers)`; it sets `func` on its parser.

A user error (a bad argument, config value or file: `localmamba.errors.UserError`, and the
file-system errors met on the user's paths) prints one line naming the argument and what to
do, and exits with status 2; `--debug` anywhere on the command line shows the traceback."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import List, Optional

from . import commands
from .errors import TORCH_HINT, UserError, is_torch_missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmamba", description="LocalMamba: windowed-scan vision SSMs")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors (any position)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def _user_error(exc: BaseException) -> Optional[str]:
    """The one-line message for an error the user can fix, else None (a bug: keep the traceback)."""
    if is_torch_missing(exc):
        return TORCH_HINT
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        result = int(args.func(args) or 0)
    except Exception as exc:
        message = _user_error(exc)
        if debug or message is None:
            raise
        command = f" {argv[0]}" if argv and not argv[0].startswith("-") else ""
        print(f"localmamba{command}: error: {message}", file=sys.stderr)
        result = 2
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
