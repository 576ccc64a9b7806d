"""Exceptions that mean "the user asked for something that cannot work" (a bad argument, a
config value, a missing or foreign file). The `localmamba` command prints them as one line
naming the argument and exits with status 2; anything else is a bug and keeps its traceback."""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """A user-facing error whose message names the offending argument and what to do."""
