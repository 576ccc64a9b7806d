"""Dense prediction on LocalMamba backbones: Mask R-CNN (FPN on LocalVMamba, ViTDet-style on
LocalVim) built from torchvision's detection parts, UperNet for semantic segmentation, COCO /
ADE20K / embedded datasets, COCO AP and mIoU, and the `localmamba detect|segment` loop.

    >>> from localmamba.dense import build_mask_rcnn, build_upernet
    >>> det = build_mask_rcnn("local_vssm_tiny", num_classes=80)
    >>> seg = build_upernet("local_vim_tiny", num_classes=150)
"""
from .backbones import BackboneInitReport, build_backbone, init_backbone
from .config import DENSE_DEFAULTS, list_dense_configs, load_dense_config
from .detection import build_mask_rcnn
from .embedded import EMBEDDED_CLASSES, EmbeddedSpec, ensure_embedded, generate_scene
from .evaluation import SegmentationMeter, coco_evaluate, slide_logits
from .segmentation import UperNet, build_upernet

__all__ = [
    "BackboneInitReport",
    "DENSE_DEFAULTS",
    "EMBEDDED_CLASSES",
    "EmbeddedSpec",
    "SegmentationMeter",
    "UperNet",
    "build_backbone",
    "build_mask_rcnn",
    "build_upernet",
    "coco_evaluate",
    "ensure_embedded",
    "generate_scene",
    "init_backbone",
    "list_dense_configs",
    "load_dense_config",
    "slide_logits",
]
