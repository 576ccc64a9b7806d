"""Direction search (SPEC section 1): reading the supernet's per-layer architecture logits
α, choosing the top-k directions per layer, writing/reading directions files, and the
heat map of per-layer probabilities.

A supernet exposes one parameter per searchable layer whose name ends with
`multi_scan.weights`: 8 logits (any shape with 8 elements) over the candidates
`localmamba.ops.SEARCH_CANDIDATES` in that order. Layers are ordered as the model
registers them (= depth order).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from ..atomic_files import atomic_write_bytes
from ..ops import SEARCH_CANDIDATES, parse_directions

__all__ = [
    "ALPHA_SUFFIX",
    "alpha_names",
    "get_alphas",
    "alphas_from_state_dict",
    "alpha_probabilities",
    "select_directions",
    "directions_record",
    "write_directions",
    "read_directions",
    "plot_alpha_heatmap",
    "is_alpha",
]

ALPHA_SUFFIX = "multi_scan.weights"
PathLike = Union[str, os.PathLike]


def is_alpha(name: str) -> bool:
    return name.endswith(ALPHA_SUFFIX)


def alphas_from_state_dict(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """{layer parameter name: (8,) logits}, in state-dict (= layer) order."""
    out = {}
    for name, value in sd.items():
        if is_alpha(name):
            v = value.detach().float().reshape(-1).cpu()
            if v.numel() != len(SEARCH_CANDIDATES):
                raise ValueError(
                    f"{name}: expected {len(SEARCH_CANDIDATES)} direction logits, got shape {tuple(value.shape)}"
                )
            out[name] = v
    return out


def get_alphas(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return alphas_from_state_dict(dict(model.named_parameters()))


def alpha_names(model: torch.nn.Module) -> List[str]:
    return [n for n, _ in model.named_parameters() if is_alpha(n)]


def alpha_probabilities(alphas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(num_layers, 8) softmax probabilities."""
    if not alphas:
        raise ValueError(
            f"no direction logits found (parameters named '*{ALPHA_SUFFIX}'); is this a search supernet checkpoint?"
        )
    return torch.stack([torch.softmax(a.float(), dim=0) for a in alphas.values()])


def select_directions(probs: torch.Tensor, top_k: int = 4,
                      candidates: Sequence[str] = SEARCH_CANDIDATES) -> List[List[str]]:
    """Per layer, the top_k candidates by probability (ties to the earlier candidate),
    listed in candidate order (h, h_flip, v, v_flip, w2, ...), as the release lists them."""
    n = probs.shape[1]
    if not 1 <= top_k <= n:
        raise ValueError(f"top_k must be in [1, {n}], got {top_k}")
    out = []
    for row in probs.tolist():
        order = sorted(range(n), key=lambda i: (-row[i], i))[:top_k]
        out.append([candidates[i] for i in sorted(order)])
    return out


def directions_record(alphas: Mapping[str, torch.Tensor], top_k: int = 4, source: Optional[str] = None,
                      model: Optional[str] = None) -> Dict[str, Any]:
    probs = alpha_probabilities(alphas)
    record = {
        "format": "localmamba-directions/1",
        "source": source,
        "search_model": model,
        "model": model[: -len("_search")] if model and model.endswith("_search") else None,
        "top_k": top_k,
        "candidates": list(SEARCH_CANDIDATES),
        "layers": list(alphas.keys()),
        "probabilities": [[round(p, 6) for p in row] for row in probs.tolist()],
        "directions": select_directions(probs, top_k),
    }
    return record


def write_directions(record: Mapping[str, Any], path: PathLike) -> Path:
    return atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def read_directions(path_or_value: Union[PathLike, Sequence[Sequence[str]]]) -> List[List[str]]:
    """Per-layer direction lists from a directions file (JSON written by export, or YAML /
    JSON holding a list or a mapping with key 'directions'), or from a list itself."""
    if isinstance(path_or_value, (list, tuple)):
        value: Any = path_or_value
        where = "directions"
    else:
        path = Path(os.path.expanduser(str(path_or_value)))
        if not path.is_file():
            raise FileNotFoundError(f"directions file {str(path)!r} not found")
        import yaml

        with open(path, "r", encoding="utf-8") as f:
            value = yaml.safe_load(f)  # YAML is a superset of JSON
        where = str(path)
        if isinstance(value, Mapping):
            if "directions" not in value:
                raise ValueError(f"{where}: no 'directions' key")
            value = value["directions"]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: expected a non-empty list of per-layer direction lists")
    out = []
    for i, layer in enumerate(value):
        if isinstance(layer, str):
            layer = [d.strip() for d in layer.split(",") if d.strip()]
        if not isinstance(layer, (list, tuple)):
            raise ValueError(f"{where}: layer {i} must be a list of direction names, got {layer!r}")
        try:
            parse_directions(list(layer))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: layer {i}: {e}") from None
        out.append([str(d) for d in layer])
    return out


def plot_alpha_heatmap(probs: torch.Tensor, path: PathLike, title: str = "direction probabilities",
                       layer_labels: Optional[Sequence[str]] = None, top_k: Optional[int] = None) -> Path:
    """PNG heat map: one row per layer, one column per candidate; chosen cells outlined."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = probs.detach().float().cpu().numpy()
    L, C = p.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * C, 1.2 + 0.32 * L))
    lo, hi = float(p.min()), float(p.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 1e-3, hi + 1e-3
    im = ax.imshow(p, aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
    if L * C <= 400:
        mid = (lo + hi) / 2
        for i in range(L):
            for j in range(C):
                ax.text(j, i, f"{p[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if p[i, j] > mid else "white")
    ax.set_xticks(range(C))
    ax.set_xticklabels(SEARCH_CANDIDATES[:C], rotation=45, ha="right")
    ax.set_yticks(range(L))
    ax.set_yticklabels(layer_labels if layer_labels is not None else [str(i) for i in range(L)], fontsize=7)
    ax.set_xlabel("candidate direction")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if top_k:
        for li, chosen in enumerate(select_directions(probs, top_k)):
            for name in chosen:
                ci = SEARCH_CANDIDATES.index(name)
                ax.add_patch(plt.Rectangle((ci - 0.5, li - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.colorbar(im, ax=ax, label="softmax(α)")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
