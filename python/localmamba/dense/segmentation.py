"""UperNet (pyramid pooling + FPN fusion) with an auxiliary FCN head on LocalMamba backbones, in
plain PyTorch, as mmseg's ``EncoderDecoder`` + ``UPerHead`` + ``FCNHead`` (SPEC-dense §5)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import backbone_channels, backbone_family, build_backbone
from .layers import ConvBNReLU, as_list

__all__ = ["UperHead", "FCNHead", "UperNet", "build_upernet", "segmentation_loss", "IGNORE_INDEX"]

IGNORE_INDEX = 255


class UperHead(nn.Module):
    """Pyramid pooling on the last map, lateral 1x1 convs + top-down sum on the others, a 3x3 conv
    per level, all levels resized to the first and fused by a 3x3 conv, dropout, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        last = in_channels[-1]
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(last, channels, 1))
                                 for s in pool_scales)
        self.ppm_bottleneck = ConvBNReLU(last + len(pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, maps: List[torch.Tensor]) -> torch.Tensor:
        x = maps[-1]
        pooled = [F.interpolate(p(x), size=x.shape[-2:], mode="bilinear", align_corners=False) for p in self.ppm]
        laterals = [lat(m) for lat, m in zip(self.lateral, maps[:-1])]
        laterals.append(self.ppm_bottleneck(torch.cat([x, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="bilinear", align_corners=False)
        outs = [conv(l) for conv, l in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.classifier(self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1))))


class FCNHead(nn.Module):
    """Auxiliary head: 3x3 conv-BN-ReLU, dropout, 1x1 classifier (mmseg FCNHead, num_convs=1)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, average_non_ignored: bool = False,
                      class_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy of logits upsampled (bilinear) to the label size, pixels labelled 255 ignored,
    each pixel weighted by its label's ``class_weight`` (all 1 when None). As mmseg's default, the
    mean runs over all pixels (``average_non_ignored=False``); otherwise over the weights of the
    labelled pixels (PyTorch's weighted mean)."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    weight = None if class_weight is None else class_weight.to(device=logits.device, dtype=torch.float32)
    loss = F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")
    if average_non_ignored:
        labelled = labels != IGNORE_INDEX
        norm = labelled.sum() if weight is None else weight[labels[labelled]].sum()
        return loss.sum() / norm.clamp(min=1e-12)
    return loss.mean()


class UperNet(nn.Module):
    """Backbone -> UperHead (+ FCNHead on ``aux_index`` while training).

    ``forward(images)`` returns the main logits at the input resolution; ``forward(images, labels)``
    (or ``loss``) the weighted training losses. Images are normalised float (B, 3, H, W), any H, W.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, channels: int = 512, aux_channels: int = 256,
                 aux_index: int = 2, aux_weight: float = 0.4, dropout: float = 0.1,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), average_non_ignored: bool = False,
                 class_weight: Optional[Sequence[float]] = None):
        super().__init__()
        if class_weight is not None and len(class_weight) != num_classes:
            raise ValueError(f"class_weight lists {len(class_weight)} weights for {num_classes} classes")
        chans = backbone_channels(backbone)
        if not -len(chans) <= aux_index < len(chans):
            raise ValueError(f"aux_index {aux_index} does not index the backbone's {len(chans)} outputs")
        self.backbone = backbone
        self.num_classes = num_classes
        self.decode_head = UperHead(chans, num_classes, channels, pool_scales, dropout)
        self.aux_index = aux_index
        self.aux_weight = aux_weight
        self.aux_head = FCNHead(chans[aux_index], num_classes, aux_channels, dropout) if aux_weight > 0 else None
        self.average_non_ignored = average_non_ignored
        # a buffer (not a parameter): moves with the model, saved with it
        self.register_buffer("class_weight", None if class_weight is None else
                             torch.tensor([float(w) for w in class_weight]), persistent=False)

    def _features(self, images: torch.Tensor) -> List[torch.Tensor]:
        return as_list(self.backbone(images))

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None):
        """Logits at the input resolution; with ``labels``, the training losses instead."""
        if labels is not None:
            return self.loss(images, labels)
        logits = self.decode_head(self._features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        if labels.shape[-2:] != images.shape[-2:] or labels.dim() != 3:
            raise ValueError(f"labels must be (B, H, W) matching the images {tuple(images.shape)}, "
                             f"got {tuple(labels.shape)}")
        maps = self._features(images)
        losses = {"loss_seg": segmentation_loss(self.decode_head(maps), labels, self.average_non_ignored,
                                                self.class_weight)}
        if self.aux_head is not None:
            losses["loss_aux"] = self.aux_weight * segmentation_loss(self.aux_head(maps[self.aux_index]), labels,
                                                                     self.average_non_ignored, self.class_weight)
        return losses


def build_upernet(backbone: str, num_classes: int, backbone_kwargs: Optional[Dict[str, Any]] = None,
                  out_indices: Optional[Sequence[int]] = None, drop_path_rate: Optional[float] = None,
                  img_size: Optional[int] = None, channels: int = 512, aux_channels: int = 256,
                  aux_index: Optional[int] = None, aux_weight: float = 0.4, dropout: float = 0.1,
                  average_non_ignored: bool = False, class_weight: Optional[Sequence[float]] = None) -> UperNet:
    """UperNet on a registered backbone. LocalVMamba: the four stages, auxiliary head on stage 3;
    LocalVim: four layers' outputs (default 4, 9, 14, 19 scaled to the depth) all at stride 16,
    auxiliary head on the last (SPEC-dense §5)."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    family = backbone_family(backbone)
    kwargs = dict(backbone_kwargs or {})
    if out_indices is None and family == "local_vim":
        out_indices = vim_out_indices(build_backbone(backbone, (-1,), **kwargs).depth)
    body = build_backbone(backbone, out_indices, drop_path_rate, img_size, **kwargs)
    if len(backbone_channels(body)) < 2:
        raise ValueError("UperNet needs at least two backbone outputs (out_indices)")
    if aux_index is None:
        aux_index = 2 if family == "local_vssm" else len(backbone_channels(body)) - 1
    return UperNet(body, num_classes, channels, aux_channels, aux_index, aux_weight, dropout,
                   average_non_ignored=average_non_ignored, class_weight=class_weight)


def vim_out_indices(depth: int) -> Tuple[int, ...]:
    """Up to four evenly spaced, distinct layers ending at the last (4, 9, 14, 19 for depth 20)."""
    step = max(1, depth // 4)
    return tuple(sorted({max(0, depth - 1 - step * k) for k in (3, 2, 1, 0)}))
