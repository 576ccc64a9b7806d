"""`localmamba detect train|eval|predict`: Mask R-CNN on LocalMamba backbones (COCO, embedded)."""
from __future__ import annotations


def register(subparsers) -> None:
    from ..dense.cli import register_task

    register_task(subparsers, "detect", "detection", "detection/embedded_local_vssm",
                  "object detection and instance segmentation (Mask R-CNN)\n\n"
                  "  localmamba detect train -c detection/embedded_local_vssm --output runs/det\n"
                  "  localmamba detect eval runs/det\n"
                  "  localmamba detect predict runs/det image.png -o overlays/")
