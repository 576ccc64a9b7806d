"""Building blocks of the dense heads: channel LayerNorm on NCHW maps, conv-BN-ReLU, and the
ViTDet simple feature pyramid (release ``SimpleFPN``, SPEC-dense §3)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LayerNorm2d", "ConvBNReLU", "SimpleFeaturePyramid"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, per pixel (eps 1e-5 as mmcv builds it)."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU, mmcv's ``ConvModule`` with BN."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def _conv_ln(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                         LayerNorm2d(out_ch))


class SimpleFeaturePyramid(nn.Module):
    """One stride-16 map of C channels -> maps at strides 4, 8, 16, 32 (+ 64 by max-pooling P5).

    Scale branches: two 2x2 deconvolutions (with LN2d + GELU between) to stride 4, one to stride 8,
    identity at 16, 2x2 max-pool to 32; then per level a 1x1 conv + LN2d and a 3x3 conv + LN2d, no
    top-down fusion. Returns an OrderedDict '0'..'3' + 'pool' as torchvision's detection heads expect.
    """

    def __init__(self, in_channels: int, out_channels: int = 256):
        super().__init__()
        c = in_channels
        if c % 4:
            raise ValueError(f"SimpleFeaturePyramid needs in_channels divisible by 4, got {c}")
        self.scales = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, stride=2), LayerNorm2d(c // 2), nn.GELU(),
                          nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2)),
            nn.ConvTranspose2d(c, c // 2, 2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(2, stride=2),
        ])
        level_channels = [c // 4, c // 2, c, c]
        self.lateral = nn.ModuleList(_conv_ln(ch, out_channels, 1) for ch in level_channels)
        self.output = nn.ModuleList(_conv_ln(out_channels, out_channels, 3) for _ in level_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        outs: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for i, (scale, lateral, output) in enumerate(zip(self.scales, self.lateral, self.output)):
            outs[str(i)] = output(lateral(scale(x)))
        outs["pool"] = F.max_pool2d(outs["3"], kernel_size=1, stride=2)
        return outs


def as_list(maps) -> List[torch.Tensor]:
    return list(maps) if isinstance(maps, (list, tuple)) else [maps]
