"""Released weights by name: download once by the release's URL, cache, verify, load strictly.

``create_model(name, pretrained=True)`` (and timm's) reads the model's pretrained cfg (timm style:
url, file, sha256, mean/std, input size, crop_pct, num_classes), fetches ``url`` into the cache
folder (``cache_dir``, else ``$LOCALMAMBA_CACHE``, else torch hub's ``checkpoints`` folder) unless
the file is already there, checks its SHA-256 when one is recorded, and loads it with
``strict=True`` (non-strict for backbones). ``file://`` URLs work too (tests use them).
"""
from __future__ import annotations

import hashlib
import os
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

__all__ = ["RELEASE_URL", "pretrained_cache_dir", "fetch_pretrained", "load_pretrained"]

#: Where the official release publishes its checkpoints (SPEC section 1.5).
RELEASE_URL = "https://github.com/hunto/LocalMamba/releases/download/v1.0.0/"


def pretrained_cache_dir(cache_dir: Union[str, os.PathLike, None] = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("LOCALMAMBA_CACHE"):
        return Path(os.environ["LOCALMAMBA_CACHE"])
    return Path(torch.hub.get_dir()) / "checkpoints"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_pretrained(name: str, cfg: Mapping[str, Any], cache_dir=None, progress: bool = True) -> Path:
    """The cached checkpoint file of ``name`` (downloaded first if absent)."""
    url = cfg.get("url") or ""
    if not url:
        raise ValueError(f"model {name!r} has no released weights (its pretrained cfg has no url); build it with "
                         "pretrained=False, or load your own file with checkpoint_path=...")
    filename = cfg.get("file") or os.path.basename(urllib.parse.urlparse(url).path)
    path = pretrained_cache_dir(cache_dir) / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=progress)
        except Exception as exc:
            raise RuntimeError(f"could not download the weights of {name!r} from {url}: {exc}; download the file "
                               f"yourself and put it at {path}") from None
    expected = cfg.get("sha256")
    if expected:
        actual = _sha256(path)
        if actual != expected:
            path.unlink()
            raise RuntimeError(f"the weights of {name!r} from {url} have SHA-256 {actual}, expected {expected}; "
                               "the corrupt file was removed, try again")
    return path


def load_pretrained(model: nn.Module, name: str, cfg: Mapping[str, Any], cache_dir=None) -> nn.Module:
    """Fetches and loads the released weights of ``name`` into ``model`` (strict for classifiers)."""
    from ._checkpoint import load_checkpoint

    path = fetch_pretrained(name, cfg, cache_dir=cache_dir)
    load_checkpoint(model, path)
    return model


def resolve_pretrained_cfg(cfg: Dict[str, Any], overlay: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A model's cfg with timm's ``pretrained_cfg_overlay`` applied."""
    cfg = dict(cfg)
    if overlay:
        cfg.update(dict(overlay))
    return cfg
