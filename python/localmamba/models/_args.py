"""Construction-time checks of model keyword arguments: a bad value fails here, naming the
argument and what was expected, instead of deep inside a reshape at the first forward."""
from __future__ import annotations

from typing import Any, Sequence, Tuple

__all__ = ["check_int", "check_size", "check_rate", "check_choice"]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_ints(name: str, values: Any, minimum: int = 1) -> Tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"{name} must be a non-empty list of ints >= {minimum}, got {values!r}")
    return tuple(check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(values))


def check_size(name: str, value: Any) -> Tuple[int, int]:
    """An int or an (H, W) pair of positive ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (H, W) pair, got {value!r}")
        return check_int(f"{name}[0]", value[0]), check_int(f"{name}[1]", value[1])
    v = check_int(name, value)
    return v, v


def check_rate(name: str, value: Any, upper_inclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} {value!r}")
    if not (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1{']' if upper_inclusive else ')'}, got {value}")
    return float(value)


def check_positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_dt_rank(value: Any) -> Any:
    if value == "auto":
        return value
    return check_int("dt_rank", value)
