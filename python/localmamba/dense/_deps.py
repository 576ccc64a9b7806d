"""Optional dependencies of the dense-prediction package, imported with a clear message."""
from __future__ import annotations

__all__ = ["require_pycocotools", "require_torchvision_detection"]


def require_pycocotools():
    """Returns (COCO, COCOeval, mask_utils) from pycocotools."""
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise ImportError(
            "COCO datasets and COCO AP need pycocotools: pip install 'localmamba[dense]' (or pip install pycocotools)"
        ) from exc
    return COCO, COCOeval, mask_utils


def require_torchvision_detection():
    """The torchvision detection module (Mask R-CNN, FPN, RoIAlign)."""
    try:
        import torchvision.models.detection as detection
    except ImportError as exc:
        raise ImportError(
            "detection models are built on torchvision: pip install 'localmamba[dense]' (or pip install torchvision)"
        ) from exc
    return detection
