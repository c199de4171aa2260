"""ResNet-18 (timm, random init) with a CIFAR-style stem for small images.

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("resnet18", input_shape=(3, 32, 32), n_classes=10)
    >>> m(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> list(m.hook_layers)
    ['layer1', 'layer2', 'layer3', 'layer4']

With ``small_stem=True`` (default) timm's 7x7/2 stem conv becomes a 3x3/1 conv and the stem
max-pool is dropped, so a 32x32 input reaches ``layer4`` at 4x4 (28x28: 4x4, 8x8: 1x1) instead
of 1x1. ``layer<i>`` hooks see ``[B, C, H, W]`` maps, reduced by spatial mean; features are
timm's global-average-pooled ``[B, 512]``.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from clbench.models.base import MODELS, CLModel, image_shape, pool_spatial_mean


class ResNet(CLModel):
    """A timm ResNet without classifier (``backbone``) plus a linear ``head``."""

    #: the layer SAE methods and the monosemanticity block hook by default: the last stage
    default_layer = "layer4"

    def __init__(self, arch: str, in_chans: int, n_classes: int, small_stem: bool = True) -> None:
        super().__init__()
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)
        if small_stem:
            out_chs = self.backbone.conv1.out_channels
            self.backbone.conv1 = nn.Conv2d(in_chans, out_chs, 3, stride=1, padding=1, bias=False)
            self.backbone.maxpool = nn.Identity()
        self.feature_dim = self.backbone.num_features
        self.head = nn.Linear(self.feature_dim, n_classes)
        self.hook_layers = {f"layer{i}": f"backbone.layer{i}" for i in range(1, 5)}
        self.pools = {name: pool_spatial_mean for name in self.hook_layers}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # num_classes=0: global-average-pooled [B, 512]


@MODELS.register(
    "resnet18", description="ResNet-18 (timm) with 3x3 stride-1 stem, no maxpool", input="image"
)
def resnet18(
    input_shape: tuple[int, ...], n_classes: int, *, small_stem: bool = True
) -> ResNet:
    c, _, _ = image_shape("resnet18", input_shape)
    return ResNet("resnet18", c, n_classes, small_stem=small_stem)
