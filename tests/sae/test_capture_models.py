"""Activation capture on every hook layer of every registered model."""
from __future__ import annotations

import pytest
import torch

from clbench.models import MODELS, create_model
from clbench.sae.capture import LayerTap, capture

SHAPES = {"any": (1, 28, 28), "image": (1, 28, 28)}
VISION = [e for e in MODELS if e.meta["input"] != "text"]   # LMs: tests/models/test_lm.py
CASES = [(e.name, layer)
         for e in VISION
         for layer in create_model(e.name, SHAPES[e.meta["input"]], 10).hook_layers]


@pytest.mark.parametrize("model_name, layer", CASES)
def test_capture_matches_a_manual_hook(model_name: str, layer: str) -> None:
    torch.manual_seed(0)
    model = create_model(model_name, SHAPES[MODELS.get(model_name).meta["input"]], 10).eval()
    x = torch.randn(6, 1, 28, 28)
    got = capture(model, layer, x, batch_size=4)            # two batches
    seen = []
    h = model.layer(layer).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(x)
    h.remove()
    pool = model.pools.get(layer, lambda t: t)
    expected = pool(seen[0]).reshape(len(x), -1)
    assert got.shape == expected.shape and got.dim() == 2
    assert torch.allclose(got, expected, atol=1e-5)
    assert not got.requires_grad


@pytest.mark.parametrize("model_name", [e.name for e in VISION])
def test_layer_tap_keeps_the_graph(model_name: str) -> None:
    model = create_model(model_name, SHAPES[MODELS.get(model_name).meta["input"]], 10)
    first = next(iter(model.hook_layers))
    with LayerTap(model, first) as tap:
        model(torch.randn(2, 1, 28, 28))
        tap.out.pow(2).sum().backward()
    first_param = next(model.parameters())
    assert first_param.grad is not None and first_param.grad.abs().sum() > 0
    assert model.head.weight.grad is None                    # nothing after the hook is reached
