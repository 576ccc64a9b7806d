"""The dataset registry: one entry per dataset, read by the config's choices and root check,
the CLI's --dataset choices and `build_datasets`. Adding a dataset is one decorated loader:

    @register_dataset("svhn", needs_root=True, description="SVHN .mat files under data.root")
    def _svhn(data_cfg):
        return train, val, DatasetInfo(...)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

__all__ = ["DatasetSpec", "register_dataset", "get_dataset", "dataset_names"]

Loader = Callable[[Mapping[str, Any]], Tuple[Any, Any, Any]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Loader  # the config's `data` section -> (train, val, DatasetInfo), transforms not attached
    needs_root: bool  # data.root (--data-dir) must be set
    description: str


_DATASETS: Dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, needs_root: bool, description: str) -> Callable[[Loader], Loader]:
    def decorate(load: Loader) -> Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = DatasetSpec(name, load, needs_root, description)
        return load

    return decorate


def dataset_names() -> List[str]:
    _ensure_builtin()
    return list(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    _ensure_builtin()
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(_DATASETS)}")
    return _DATASETS[name]


def _ensure_builtin() -> None:
    from . import datasets  # noqa: F401  (registers the built-in datasets on import)
