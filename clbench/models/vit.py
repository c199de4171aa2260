"""A small Vision Transformer (timm, random init) sized for 8x8..32x32 images.

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("vit", input_shape=(3, 32, 32), n_classes=10)  # patch 4: 64 tokens
    >>> m(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> list(m.hook_layers)
    ['block0', 'block1', 'block2', 'block3', 'block4', 'block5', 'cls']

Default config: embed_dim 192, depth 6, 3 heads, mlp_ratio 2, CLS-token pooling; patch size 4
when both sides are >= 16 and divisible by 4, else 2 (8x8 digits: 16 tokens), else 1.
``block<i>`` hooks timm's ``blocks.<i>`` (output ``[B, T, D]``, reduced to the CLS token);
``cls`` hooks the final norm, whose CLS token is ``forward_features``' output ``[B, D]``.
"""
from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from clbench.errors import ClbenchError
from clbench.models.base import MODELS, CLModel, image_shape, pool_tokens_cls


class ViT(CLModel):
    """timm ``VisionTransformer`` without classifier (``backbone``) plus a linear ``head``."""

    #: the layer SAE methods and the monosemanticity block hook by default: the normed CLS token the head reads
    default_layer = "cls"

    def __init__(
        self,
        img_size: tuple[int, int],
        in_chans: int,
        n_classes: int,
        *,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
    ) -> None:
        super().__init__()
        self.backbone = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool="token",
            class_token=True,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=2.0,
        )
        self.feature_dim = embed_dim
        self.head = nn.Linear(embed_dim, n_classes)
        self.hook_layers = {f"block{i}": f"backbone.blocks.{i}" for i in range(depth)}
        self.hook_layers["cls"] = "backbone.norm"
        self.pools = {name: pool_tokens_cls for name in self.hook_layers}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # num_classes=0: the normed CLS token [B, embed_dim]


def default_patch_size(h: int, w: int) -> int:
    """4 for images with both sides >= 16, else 2, falling back to a size dividing both sides."""
    for p in (4, 2, 1) if min(h, w) >= 16 else (2, 1):
        if h % p == 0 and w % p == 0:
            return p
    return 1


@MODELS.register(
    "vit", description="small ViT: dim 192, depth 6, 3 heads, patch 4 (2 for 8x8)", input="image"
)
def vit(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    depth: int = 6,
    embed_dim: int = 192,
    num_heads: int = 3,
    patch_size: int | None = None,
) -> ViT:
    c, h, w = image_shape("vit", input_shape)
    p = default_patch_size(h, w) if patch_size is None else int(patch_size)
    if p < 1 or h % p or w % p:
        raise ClbenchError(f"vit patch_size {p} must divide the image size {h}x{w}")
    if embed_dim % num_heads:
        raise ClbenchError(f"vit embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    if depth < 1:
        raise ClbenchError(f"vit depth must be >= 1; got {depth}")
    return ViT(
        (h, w), c, n_classes, patch_size=p, embed_dim=embed_dim, depth=depth, num_heads=num_heads
    )
