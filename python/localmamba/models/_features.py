"""timm's feature-info contract for the backbones, without importing timm.

``backbone.feature_info`` describes every stage the backbone can return (``num_chs``,
``reduction``, ``module``) and which of them it returns (``out_indices``). As timm's
``FeatureInfo``: ``channels()``, ``reduction()``, ``module_name()``, ``get_dicts()`` answer for
the returned stages (or ``idx``); iterating yields the returned stages' dicts, in output order, so
libraries that take timm encoders (e.g. segmentation_models_pytorch's ``tu-`` encoders) work.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

__all__ = ["FeatureInfo"]


class FeatureInfo:
    def __init__(self, stages: Sequence[Dict[str, Any]], out_indices: Sequence[int]):
        self.info: List[Dict[str, Any]] = [dict(s) for s in stages]
        self.out_indices = tuple(out_indices)

    def _selected(self, idx: Optional[Union[int, Sequence[int]]]) -> List[Dict[str, Any]]:
        if idx is None:
            return [self.info[i] for i in self.out_indices]
        if isinstance(idx, int):
            return [self.info[idx]]
        return [self.info[i] for i in idx]

    def get(self, key: str, idx=None):
        values = [s[key] for s in self._selected(idx)]
        return values[0] if isinstance(idx, int) else values

    def channels(self, idx=None):
        return self.get("num_chs", idx)

    def reduction(self, idx=None):
        return self.get("reduction", idx)

    def module_name(self, idx=None):
        return self.get("module", idx)

    def get_dicts(self, keys: Optional[Sequence[str]] = None, idx=None) -> List[Dict[str, Any]]:
        return [s if keys is None else {k: s[k] for k in keys} for s in self._selected(idx)]

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self._selected(None))

    def __len__(self) -> int:
        return len(self.out_indices)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self._selected(None)[i]

    def __repr__(self) -> str:
        return f"FeatureInfo(out_indices={self.out_indices}, stages={self.info})"
