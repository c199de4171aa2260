"""A small CNN for ``[C, H, W]`` images from 8x8 (digits) up to 32x32 (CIFAR).

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("cnn", input_shape=(1, 28, 28), n_classes=10)
    >>> m(torch.randn(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    >>> m.hook_layers
    {'conv1': 'conv1', 'conv2': 'conv2', 'fc': 'fc'}

``conv<i>`` is ``Conv3x3 -> ReLU -> MaxPool2`` (hooks see the pooled map ``[B, C_i, H', W']``,
reduced to ``[B, C_i]`` by spatial mean); ``fc`` is ``Linear -> ReLU`` after global average
pooling and is ``forward_features``' output ``[B, feature_dim]``.
"""
from __future__ import annotations

import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.models.base import MODELS, CLModel, image_shape, pool_spatial_mean


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class CNN(CLModel):
    """``x -> conv1 -> ... -> convN -> global avg pool -> fc (Linear, ReLU) -> head``."""

    #: the layer SAE methods and the monosemanticity block hook by default: the feature layer the head reads
    default_layer = "fc"

    def __init__(
        self, in_chans: int, n_classes: int, channels: tuple[int, ...], feature_dim: int
    ) -> None:
        super().__init__()
        widths = (in_chans, *channels)
        self.n_blocks = len(channels)
        for i in range(self.n_blocks):
            self.add_module(f"conv{i + 1}", conv_block(widths[i], widths[i + 1]))
        self.fc = nn.Sequential(nn.Linear(channels[-1], feature_dim), nn.ReLU())
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, n_classes)
        convs = [f"conv{i + 1}" for i in range(self.n_blocks)]
        self.hook_layers = {name: name for name in [*convs, "fc"]}
        self.pools = {name: pool_spatial_mean for name in convs}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_blocks):
            x = getattr(self, f"conv{i + 1}")(x)
        return self.fc(pool_spatial_mean(x))


@MODELS.register(
    "cnn", description="small CNN, conv 32/64 + maxpool, 128-d features", input="image"
)
def cnn(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    channels: tuple[int, ...] = (32, 64),
    feature_dim: int = 128,
) -> CNN:
    channels = tuple(int(c) for c in channels)
    if not channels:
        raise ClbenchError("cnn needs at least one conv block; got channels=()")
    c, _, _ = image_shape("cnn", input_shape, min_size=2 ** len(channels))
    return CNN(c, n_classes, channels, int(feature_dim))
