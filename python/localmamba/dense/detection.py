"""Mask R-CNN on LocalMamba backbones, built from torchvision's detection parts (RPN, RoIAlign,
box coder, NMS, losses are torchvision's; nothing of that is written here).

* ``mask_rcnn_fpn``: LocalVMamba's four stage outputs (through their output norms) -> torchvision
  ``FeaturePyramidNetwork`` (256 channels, P6 by max-pooling P5: five levels), as the release's
  Mask R-CNN 1x / MS-3x configs.
* ``mask_rcnn_vitdet``: LocalVim's last layer (stride 16) -> :class:`SimpleFeaturePyramid`, an RPN
  head with two convs, a 4-conv + 1-FC box head and a mask head with LayerNorm2d (ViTDet, the
  release's ``SimpleFPN`` + ``Shared4Conv1FCBBoxHead``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ._deps import require_torchvision_detection
from .backbones import backbone_channels, backbone_family, build_backbone
from .layers import LayerNorm2d, SimpleFeaturePyramid, as_list

__all__ = ["build_mask_rcnn", "DETECTION_ARCHS"]

DETECTION_ARCHS = ("mask_rcnn_fpn", "mask_rcnn_vitdet")


class BackboneFPN(nn.Module):
    """A multi-scale backbone followed by torchvision's FPN with a max-pooled extra level."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        self.body = body
        self.fpn = FeaturePyramidNetwork(backbone_channels(body), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        maps = as_list(self.body(x))
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


class BackboneSimpleFPN(nn.Module):
    """A single-scale (stride 16) backbone followed by the ViTDet simple feature pyramid."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.fpn = SimpleFeaturePyramid(backbone_channels(body)[-1], out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.fpn(as_list(self.body(x))[-1])


def _transform_without_resize(transform):
    """Keeps torchvision's normalisation and batching (padding to a multiple of 32) but not its
    resize: for pipelines (multi-scale crop, large-scale jitter) that resize in the dataset."""
    transform.resize = lambda image, target=None: (image, target)
    return transform


def build_mask_rcnn(
    backbone: str,
    num_classes: int,
    arch: Optional[str] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    out_indices: Optional[Sequence[int]] = None,
    drop_path_rate: Optional[float] = None,
    img_size: Optional[int] = None,
    neck_channels: int = 256,
    representation_size: int = 1024,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    min_size: Any = 800,
    max_size: int = 1333,
    resize_in_model: bool = True,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 1000,
    rpn_post_nms_top_n_test: int = 1000,
    box_batch_size_per_image: int = 512,
    mask_head_convs: int = 4,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> nn.Module:
    """Mask R-CNN on a registered LocalMamba backbone. ``num_classes`` counts object classes
    (the background class is added here). ``arch`` defaults to FPN for LocalVMamba and ViTDet for
    LocalVim. Images go in as float RGB in [0, 1], any size."""
    detection = require_torchvision_detection()
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive number of object classes, got {num_classes!r}")
    family = backbone_family(backbone)
    arch = arch or ("mask_rcnn_fpn" if family == "local_vssm" else "mask_rcnn_vitdet")
    if arch not in DETECTION_ARCHS:
        raise ValueError(f"arch must be one of {', '.join(DETECTION_ARCHS)}, got {arch!r}")
    if len(anchor_sizes) != 5:
        raise ValueError(f"anchor_sizes must give one size per pyramid level (5), got {list(anchor_sizes)}")
    kwargs = dict(backbone_kwargs or {})
    if arch == "mask_rcnn_vitdet":
        if family != "local_vim":
            raise ValueError("arch 'mask_rcnn_vitdet' needs a single-scale LocalVim backbone")
        body = build_backbone(backbone, out_indices or (-1,), drop_path_rate, img_size, **kwargs)
        trunk = BackboneSimpleFPN(body, neck_channels)
    else:
        body = build_backbone(backbone, out_indices, drop_path_rate, img_size, **kwargs)
        trunk = BackboneFPN(body, neck_channels)

    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(float(a) for a in aspect_ratios),) * 5)
    levels = ["0", "1", "2", "3"]
    box_pool = MultiScaleRoIAlign(levels, 7, sampling_ratio=0)  # 0: adaptive, as mmdet
    mask_pool = MultiScaleRoIAlign(levels, 14, sampling_ratio=0)
    c = neck_channels
    n_anchor = len(aspect_ratios)
    if arch == "mask_rcnn_vitdet":
        rpn_head = RPNHead(c, n_anchor, conv_depth=2)
        box_head = FastRCNNConvFCHead((c, 7, 7), [c] * 4, [representation_size], norm_layer=LayerNorm2d)
        mask_head = MaskRCNNHeads(c, [c] * mask_head_convs, 1, norm_layer=LayerNorm2d)
    else:
        rpn_head = RPNHead(c, n_anchor)
        box_head = TwoMLPHead(c * 7 * 7, representation_size)
        mask_head = MaskRCNNHeads(c, [c] * mask_head_convs, 1)
    model = detection.MaskRCNN(
        trunk, num_classes=None, min_size=min_size, max_size=max_size, image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchors, rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_batch_size_per_image=box_batch_size_per_image,
        box_roi_pool=box_pool, box_head=box_head, box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
        mask_roi_pool=mask_pool, mask_head=mask_head, mask_predictor=MaskRCNNPredictor(c, c, num_classes + 1),
    )
    if not resize_in_model:
        _transform_without_resize(model.transform)
    model.arch = arch
    return model


def detector_backbone(model: nn.Module) -> nn.Module:
    """The LocalMamba backbone inside a detector built by :func:`build_mask_rcnn`."""
    return model.backbone.body


def image_sizes(images: List[torch.Tensor]) -> List[Tuple[int, int]]:
    return [tuple(int(s) for s in im.shape[-2:]) for im in images]
