"""ConvNeXt-V2 atto (timm, random init) with a stem that keeps small images alive.

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("convnextv2", input_shape=(1, 28, 28), n_classes=10)
    >>> m(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> list(m.hook_layers)
    ['stage0', 'stage1', 'stage2', 'stage3', 'head']

timm's ConvNeXt reduces by 32 (patch-4 stem, then three 2x downsamples); a 28x28 input would
reach stage 3 at 0x0. Here the stem is a 1x1 patch (``patch_size=1``), which timm follows with
a stride-1 stage 0, so the total reduction is 8: 32x32 -> 32/16/8/4, 28x28 -> 28/14/7/3,
8x8 -> 8/4/2/1 across stages 0-3. ``stage<i>`` hooks see ``[B, C, H, W]`` maps (spatial mean);
``head`` hooks timm's classifier-free head (pool, LayerNorm, flatten), whose output is
``forward_features``' ``[B, 320]`` -- not the linear classifier, which is ``model.head``.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.models.base import MODELS, CLModel, image_shape, pool_spatial_mean


def last_stage_size(size: int, patch_size: int) -> int:
    """Side length after timm ConvNeXt's stem and four stages (mirrors its stride rule).

    The stem divides by ``patch_size``; stage 0 downsamples by 2 only when the stem stride is 2;
    stages 1-3 always downsample by 2 (kernel 2, stride 2: floor division).
    """
    size //= patch_size
    for _ in range(4 if patch_size == 2 else 3):
        size //= 2
    return size


class ConvNeXt(CLModel):
    """A timm ConvNeXt without classifier (``backbone``) plus a linear ``head``."""

    #: the layer SAE methods and the monosemanticity block hook by default: the pooled, normed features the head reads
    default_layer = "head"

    def __init__(self, arch: str, in_chans: int, n_classes: int, patch_size: int) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            arch, pretrained=False, num_classes=0, in_chans=in_chans, patch_size=patch_size
        )
        self.feature_dim = self.backbone.num_features
        self.head = nn.Linear(self.feature_dim, n_classes)
        n_stages = len(self.backbone.stages)
        self.hook_layers = {f"stage{i}": f"backbone.stages.{i}" for i in range(n_stages)}
        self.pools = {name: pool_spatial_mean for name in self.hook_layers}
        self.hook_layers["head"] = "backbone.head"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # num_classes=0: pooled, normed [B, num_features]


@MODELS.register(
    "convnextv2",
    description="ConvNeXt-V2 atto (timm), 1x1 patch stem for small images",
    input="image",
)
def convnextv2(input_shape: tuple[int, ...], n_classes: int, *, patch_size: int = 1) -> ConvNeXt:
    c, h, w = image_shape("convnextv2", input_shape)
    if patch_size < 1 or last_stage_size(min(h, w), patch_size) < 1:
        raise ClbenchError(
            f"convnextv2 with patch_size={patch_size} shrinks a {h}x{w} image to nothing; "
            "use patch_size=1 (needs >= 8x8) or --model cnn"
        )
    return ConvNeXt("convnextv2_atto", c, n_classes, patch_size)
