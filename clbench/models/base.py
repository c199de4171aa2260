"""The small interface every registered model has.

    >>> import torch
    >>> from clbench.models import create_model
    >>> m = create_model("mlp", input_shape=(1, 28, 28), n_classes=10)
    >>> x = torch.randn(2, 1, 28, 28)
    >>> torch.equal(m.forward_head(m.forward_features(x)), m(x))   # logits [B, n_classes]
    True
    >>> m.hook_layers, m.default_layer   # names SAEs can be hooked into, and the default one
    ({'fc1': 'body.fc1', 'fc2': 'body.fc2'}, 'fc1')

Like timm, a model is ``forward_head(forward_features(x))``: ``forward_features`` returns the
``[B, feature_dim]`` representation the classifier reads, ``head`` is the final ``nn.Linear``.
``hook_layers`` maps short public layer names to module paths (``dict(model.named_modules())``
keys); the output of that module is what activation capture records (pooled to ``[B, D]``
where the module outputs feature maps or token sequences, see ``pool``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.registry import Registry

#: every model factory, registered next to its class with ``input="any" | "image"``;
#: importing ``clbench.models`` imports the model modules, which fills it
MODELS: Registry[Callable[..., "CLModel"]] = Registry("model")


def pool_tokens_cls(t: torch.Tensor) -> torch.Tensor:
    """ViT block output ``[B, T, D]`` -> CLS token ``[B, D]``."""
    return t[:, 0]


def pool_spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """Feature map ``[B, C, H, W]`` -> ``[B, C]`` by global average pooling."""
    return t.mean(dim=(2, 3))


class CLModel(nn.Module):
    """Base class: subclasses set ``feature_dim``, ``head``, ``hook_layers`` and ``pools``."""

    feature_dim: int
    head: nn.Linear
    hook_layers: dict[str, str]
    #: the hook layer SAE-based methods and the monosemanticity block use when none is given
    default_layer: str
    #: per hook-layer name, how its raw output becomes ``[B, D]`` (absent: already flat)
    pools: dict[str, Callable[[torch.Tensor], torch.Tensor]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def layer(self, name: str) -> nn.Module:
        """The module behind public layer ``name``."""
        return dict(self.named_modules())[self.hook_layers[name]]


def default_layer(model: nn.Module) -> str:
    """The model's ``default_layer`` (through a task-incremental wrapper too), else its first
    hook layer: the layer an SAE method hooks when its ``layer`` setting is empty."""
    name = getattr(model, "default_layer", None)
    return name if isinstance(name, str) and name else next(iter(model.hook_layers))


def image_shape(
    model: str, input_shape: tuple[int, ...], min_size: int = 1
) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``input_shape``; a one-line ClbenchError if ``model`` cannot take it."""
    if len(input_shape) != 3:
        raise ClbenchError(
            f"model {model!r} needs image input [C,H,W]; stream input is {tuple(input_shape)}; "
            "use --model mlp"
        )
    c, h, w = (int(d) for d in input_shape)
    if min(h, w) < min_size:
        raise ClbenchError(
            f"model {model!r} needs images of at least {min_size}x{min_size}; "
            f"stream input is {tuple(input_shape)}; use --model mlp"
        )
    return c, h, w
