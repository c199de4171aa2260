"""Task-incremental wrapper: a shared backbone with one Avalanche head per task.

    >>> import torch
    >>> from clbench.models import create_model, make_multihead
    >>> m = make_multihead(create_model("mlp", input_shape=(40,), n_classes=2))
    >>> m(torch.randn(4, 40), task_labels=0).shape  # head "0" exists from the start
    torch.Size([4, 2])

The backbone's own ``head`` is not used: ``forward(x, task_labels)`` is
``MultiHeadClassifier(backbone.forward_features(x), task_labels)``. Avalanche strategies call
``adaptation(experience)`` before each experience, which adds a head for an unseen task label
and grows a head for unseen classes; with ``masking=True`` (Avalanche's default) the logits of
classes not yet seen in training for a task are set to -1000, so call adaptation (or train
with an Avalanche strategy) before reading logits. ``hook_layers`` are the backbone's, with
module paths prefixed by ``backbone.``, so activation capture works unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
from avalanche.models import MultiHeadClassifier, MultiTaskModule
from torch import nn

from clbench.models.base import CLModel


class MultiHeadModel(MultiTaskModule):
    """``backbone.forward_features`` followed by a per-task linear head."""

    def __init__(
        self, backbone: CLModel, initial_out_features: int = 2, masking: bool = True
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = MultiHeadClassifier(
            backbone.feature_dim, initial_out_features=initial_out_features, masking=masking
        )

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def hook_layers(self) -> dict[str, str]:
        return {name: f"backbone.{path}" for name, path in self.backbone.hook_layers.items()}

    @property
    def default_layer(self) -> str:
        return self.backbone.default_layer

    @property
    def pools(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        return self.backbone.pools

    def layer(self, name: str) -> nn.Module:
        """The module behind public layer ``name``."""
        return self.backbone.layer(name)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int | None) -> torch.Tensor:
        """Logits ``[B, max classes]``; the backbone runs once for the whole mixed-task batch."""
        return self.classifier(self.backbone.forward_features(x), task_labels)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.classifier.forward_single_task(self.backbone.forward_features(x), task_label)


def make_multihead(
    model: CLModel, initial_out_features: int = 2, masking: bool = True
) -> MultiHeadModel:
    """Wrap ``model`` for task-incremental learning (one head per task label)."""
    return MultiHeadModel(model, initial_out_features=initial_out_features, masking=masking)
