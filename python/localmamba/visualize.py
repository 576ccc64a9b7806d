"""Drawings of scan orders (used by `localmamba info --png`)."""
from __future__ import annotations

import math
from typing import Sequence

from .ops import scan_order
from .ops.directions import parse_directions


def draw_scan_orders(directions: Sequence[str], H: int, W: int, path: str) -> None:
    """One panel per direction: the grid, each token numbered by its step in the scan, and the
    path through it; padding tokens of windowed scans are drawn as grey cells outside the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d.name for d in parse_directions(list(directions))]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        order = scan_order(name, H, W).tolist()
        window = 1
        if name.startswith("w"):
            window = int(name[1:].split("_")[0])
        Hp, Wp = -(-H // window) * window, -(-W // window) * window
        for i in range(Hp):
            for j in range(Wp):
                inside = i < H and j < W
                ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor="white" if inside else "#dddddd", edgecolor="#bbbbbb"))
        if window > 1:
            for gi in range(0, Hp + 1, window):
                ax.plot([0, Wp], [gi, gi], color="black", linewidth=1.2)
            for gj in range(0, Wp + 1, window):
                ax.plot([gj, gj], [0, Hp], color="black", linewidth=1.2)
        real = [(step, p) for step, p in enumerate(order) if p >= 0]
        xs = [p % W + 0.5 for _, p in real]
        ys = [p // W + 0.5 for _, p in real]
        ax.plot(xs, ys, color="tab:blue", linewidth=1.0, alpha=0.7)
        ax.scatter(xs[:1], ys[:1], color="tab:green", s=40, zorder=3, label="start")
        ax.scatter(xs[-1:], ys[-1:], color="tab:red", s=40, zorder=3, label="end")
        if H * W <= 256:
            for step, p in real:
                ax.text(p % W + 0.5, p // W + 0.5, str(step), ha="center", va="center", fontsize=6)
        ax.set_xlim(0, Wp)
        ax.set_ylim(Hp, 0)
        ax.set_aspect("equal")
        ax.set_title(f"{name}  (length {len(order)})", fontsize=9)
    fig.suptitle(f"LocalMamba scan orders on a {H}x{W} grid (numbers: step in the scan)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
