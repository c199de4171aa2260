"""Activation capture (eval, no graph) and LayerTap (training time, graph kept)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.models.base import CLModel, pool_tokens_cls
from clbench.sae.capture import LayerTap, capture


class TinyNet(CLModel):
    """6 -> fc0 -> ReLU -> fc1 (8) -> tokens [B, 2, 4] -> dropout -> flatten -> head (3)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(OrderedDict(
            fc0=nn.Linear(6, 8), act=nn.ReLU(), fc1=nn.Linear(8, 8),
            tokens=nn.Unflatten(1, (2, 4)), drop=nn.Dropout(0.5), flat=nn.Flatten()))
        self.head = nn.Linear(8, 3)
        self.feature_dim = 8
        self.hook_layers = {"fc1": "body.fc1", "tokens": "body.tokens"}
        self.pools = {"tokens": pool_tokens_cls}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def test_capture_equals_manual_forward(model: TinyNet) -> None:
    x = torch.randn(50, 6)
    model.train()
    acts = capture(model, "fc1", x, batch_size=16)
    assert model.training  # mode restored
    with torch.no_grad():
        want = model.body.fc1(model.body.act(model.body.fc0(x)))
    torch.testing.assert_close(acts, want)
    assert not acts.requires_grad


def test_capture_applies_the_layer_pool(model: TinyNet) -> None:
    x = torch.randn(10, 6)
    with torch.no_grad():
        tokens = model.body.tokens(model.body.fc1(model.body.act(model.body.fc0(x))))
    torch.testing.assert_close(capture(model, "tokens", x), tokens[:, 0])


def test_unknown_layer_names_the_known_ones(model: TinyNet) -> None:
    with pytest.raises(ClbenchError, match=r"unknown layer 'fc9' for model 'TinyNet'; "
                                           r"known: fc1, tokens"):
        capture(model, "fc9", torch.randn(2, 6))
    model.name = "mlp"
    with pytest.raises(ClbenchError, match="for model 'mlp'"):
        LayerTap(model, "x")


def test_layer_tap_keeps_the_graph(model: TinyNet) -> None:
    x = torch.randn(4, 6)
    with LayerTap(model, "fc1") as tap:
        model(x)
        assert tap.out is not None and tap.out.shape == (4, 8)
        assert tap.out.grad_fn is not None
        tap.out.pow(2).sum().backward()
    assert model.body.fc0.weight.grad is not None and model.body.fc0.weight.grad.abs().sum() > 0
    assert model.head.weight.grad is None  # above the layer: untouched
    last = tap.out
    model(x)
    assert tap.out is last  # hook removed on exit


def test_layer_tap_pools(model: TinyNet) -> None:
    tap = LayerTap(model, "tokens")
    model.eval()
    model(torch.randn(3, 6))
    assert tap.out is not None and tap.out.shape == (3, 4)
    tap.remove()
