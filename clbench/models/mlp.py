"""A plain multilayer perceptron: flatten, ``Linear -> ReLU`` per hidden layer, linear head.

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("mlp", input_shape=(1, 28, 28), n_classes=10, hidden=(400, 400))
    >>> m(torch.randn(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    >>> m.hook_layers
    {'fc1': 'body.fc1', 'fc2': 'body.fc2'}

Each hidden layer ``fc<i>`` is an ``nn.Sequential(Linear, ReLU)`` block, so a hook on it
records the post-ReLU activation ``[B, hidden[i-1]]``. Dropout sits after the block
(``drop<i>``), so hooks see activations before dropout.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.models.base import MODELS, CLModel


class MLP(CLModel):
    """``x -> flatten -> [Linear -> ReLU -> Dropout] * len(hidden) -> head``.

    ``forward_features`` returns the last hidden activation ``[B, hidden[-1]]``.
    """

    #: the layer SAE methods and the monosemanticity block hook by default: the first hidden layer, as in SAE-ception's MLP setting
    default_layer = "fc1"

    def __init__(
        self, in_features: int, n_classes: int, hidden: tuple[int, ...], dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Sequential(nn.Linear(width, h), nn.ReLU())
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            width = h
        self.body = nn.Sequential(layers)
        self.feature_dim = width
        self.head = nn.Linear(width, n_classes)
        self.hook_layers = {f"fc{i}": f"body.fc{i}" for i in range(1, len(hidden) + 1)}
        self.pools = {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@MODELS.register(
    "mlp", description="MLP on flattened input, 2x400 ReLU by default", input="any"
)
def mlp(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    hidden: tuple[int, ...] = (400, 400),
    dropout: float = 0.0,
) -> MLP:
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
        raise ClbenchError(f"mlp needs >= 1 hidden layer, each of width >= 1; got {hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ClbenchError(f"mlp dropout must be in [0, 1); got {dropout}")
    return MLP(math.prod(input_shape), n_classes, hidden, dropout)
