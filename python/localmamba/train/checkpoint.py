"""Training checkpoints: crash-safe writes (re-exported from `localmamba.atomic_files`),
RNG state capture, and reading checkpoints back.

Training checkpoints hold only tensors and plain Python containers (RNG states are
converted), so they load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch

from ..atomic_files import atomic_save_safetensors, atomic_torch_save, atomic_write_bytes, remove_stale_temps
from ..errors import UserError
from ..models._checkpoint import extract_state_dict, strip_prefixes  # noqa: F401  (the one unwrapper)

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_write_bytes",
    "atomic_torch_save",
    "atomic_save_safetensors",
    "remove_stale_temps",
    "load_training_checkpoint",
    "CheckpointError",
    "unreadable_reason",
    "get_rng_state",
    "set_rng_state",
    "extract_state_dict",
]

PathLike = Union[str, os.PathLike]

#: The "format" field of a resumable training checkpoint (last.pt / best.pt).
CHECKPOINT_FORMAT = "localmamba-train/1"


def get_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA RNG states, as tensors and plain containers."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"]))
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def unreadable_reason(path: PathLike, exc: BaseException) -> str:
    """Why torch.load failed, in words: an empty file, not a PyTorch file at all, or the error."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b"PK"
    if not head:
        return "empty file"
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # zip (torch.save) or legacy pickle
        return "not a PyTorch file"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 120 else text[:117] + "..."


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable or not what the command needs."""


def load_training_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu",
                             flag: str = "--resume") -> Dict[str, Any]:
    """A training checkpoint (a run folder means its last.pt); errors name `flag`."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{flag} {path}: checkpoint not found; give a run folder or its last.pt / best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{flag} {path}: cannot read this checkpoint ({unreadable_reason(path, e)}); "
                              "give a run folder or its last.pt / best.pt") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{flag} {path}: not a localmamba checkpoint (it holds a {type(ckpt).__name__}, "
                              "not a dict)")
    return ckpt

