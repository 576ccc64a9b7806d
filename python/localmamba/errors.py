"""Exceptions that mean "the user asked for something that cannot work" (a bad argument, a
config value, a missing or foreign file). The `localmamba` command prints them as one line
naming the argument and exits with status 2; anything else is a bug and keeps its traceback.
Also the one check for PyTorch: the native extension builds and imports without it, but every
op, model and command that computes needs it."""
from __future__ import annotations

__all__ = ["UserError", "TorchMissingError", "TORCH_HINT", "require_torch"]

TORCH_HINT = ("PyTorch is required but not installed: pip install torch "
              "(CPU-only wheel: pip install torch --index-url https://download.pytorch.org/whl/cpu)")


class UserError(ValueError):
    """A user-facing error whose message names the offending argument and what to do."""


class TorchMissingError(ImportError):
    """PyTorch is not installed."""


def is_torch_missing(exc: BaseException) -> bool:
    return isinstance(exc, TorchMissingError) or (
        isinstance(exc, ModuleNotFoundError) and exc.name == "torch")


def require_torch() -> None:
    """Raises TorchMissingError (one line saying how to install PyTorch) when torch is absent."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if not is_torch_missing(exc):
            raise
        raise TorchMissingError(TORCH_HINT) from None
