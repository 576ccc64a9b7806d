"""`localmamba segment train|eval|predict`: UperNet semantic segmentation (ADE20K, embedded)."""
from __future__ import annotations


def register(subparsers) -> None:
    from ..dense.cli import register_task

    register_task(subparsers, "segment", "segmentation", "segmentation/embedded_local_vssm",
                  "semantic segmentation (UperNet)\n\n"
                  "  localmamba segment train -c segmentation/embedded_local_vssm --output runs/seg\n"
                  "  localmamba segment eval runs/seg\n"
                  "  localmamba segment predict runs/seg image.png -o overlays/")
