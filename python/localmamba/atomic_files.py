"""Crash-safe file writes, shared by training (checkpoints, metrics summaries) and search
(directions files, heat maps).

Every write goes to a temporary file `.<name>.<random>.tmp` in the destination directory,
is flushed and fsync'ed, then renamed over the destination (`os.replace`, atomic on POSIX
and Windows). A process killed mid-write therefore leaves the previous file intact; the
stray temporary file is removed by the next write of that file or by `remove_stale_temps`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = ["atomic_write_bytes", "atomic_torch_save", "atomic_save_safetensors", "remove_stale_temps"]

PathLike = Union[str, os.PathLike]


def _temp_pattern(name: str) -> str:
    return f".{name}.*.tmp"


def remove_stale_temps(folder: PathLike, name: str = "*") -> List[Path]:
    """Deletes temporary files left in `folder` by interrupted atomic writes (of `name`, or
    of any file); returns the paths removed."""
    removed = []
    for stale in Path(folder).glob(_temp_pattern(name)):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:
            pass
    return removed


def _fsync_dir(folder: Path) -> None:
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _atomic_write(path: PathLike, write_fn) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_save_safetensors(tensors: Mapping[str, Any], path: PathLike,
                            metadata: Optional[Dict[str, str]] = None) -> Path:
    from safetensors.torch import save

    # clone: safetensors refuses tensors that share storage
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(plain, metadata=metadata))
