"""Metrics as JSON lines and PNG plots of the loss and accuracy curves."""
from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

__all__ = ["MetricsWriter", "read_metrics", "plot_curves"]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class MetricsWriter:
    """Appends one JSON object per line to `path` (flushed per record). With
    `truncate_after_step`, records of a previous run beyond that global step (written
    after the checkpoint being resumed) are dropped first."""

    def __init__(self, path: Union[str, os.PathLike], truncate_after_step: Optional[int] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= truncate_after_step]
            from .checkpoint import atomic_write_bytes

            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: Dict[str, Any]) -> None:
        self._f.write(json.dumps(_clean(record)) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Union[str, os.PathLike]) -> List[Dict[str, Any]]:
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
    return out


def plot_curves(records: List[Dict[str, Any]], path: Union[str, os.PathLike], title: str = "") -> Path:
    """Two panels: training loss per step (and per-epoch val loss), accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .checkpoint import atomic_write_bytes

    steps = [r for r in records if r.get("event") == "step"]
    epochs = [r for r in records if r.get("event") == "epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="train loss (step)")
    ev = [r for r in epochs if "train_loss" in r]
    if ev:
        ax1.plot([r["step"] for r in ev], [r["train_loss"] for r in ev], "o-", label="train loss (epoch mean)")
    vv = [r for r in epochs if "val_loss" in r]
    if vv:
        ax1.plot([r["step"] for r in vv], [r["val_loss"] for r in vv], "s-", label="val loss")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("loss")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for key, label in (("val_acc1", "val top-1"), ("val_acc5", "val top-5"), ("ema_acc1", "EMA val top-1")):
        pts = [r for r in epochs if key in r]
        if pts:
            ax2.plot([r["epoch"] for r in pts], [r[key] for r in pts], "o-", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
