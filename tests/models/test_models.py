"""Every registered model, on every input shape it takes, honours the CLModel interface.

    $ python -m pytest tests/models -q

Parametrized over the whole registry: a new model is tested with no new test code.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from clbench.errors import ClbenchError
from clbench.models import MODELS, CLModel, create_model, list_models, make_multihead

IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
FLAT_SHAPES = [(40,)]
N_CLASSES = 5


def supported_shapes(name: str) -> list[tuple[int, ...]]:
    return IMAGE_SHAPES + (FLAT_SHAPES if MODELS.get(name).meta["input"] == "any" else [])


#: models that take tensors (the language models, input "text", have tests/models/test_lm.py)
VISION = [e.name for e in MODELS if e.meta["input"] != "text"]
CASES = [(name, shape) for name in VISION for shape in supported_shapes(name)]
IMAGE_ONLY = [e.name for e in MODELS if e.meta["input"] == "image"]


def case_id(case: tuple[str, tuple[int, ...]]) -> str:
    return f"{case[0]}-{'x'.join(map(str, case[1]))}"


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def built(request: pytest.FixtureRequest) -> tuple[CLModel, tuple[int, ...]]:
    name, shape = request.param
    torch.manual_seed(0)
    return create_model(name, input_shape=shape, n_classes=N_CLASSES), shape


def test_registry_entries_have_description_and_input_kind() -> None:
    assert len(MODELS) >= 5
    for entry in MODELS:
        assert entry.description and "\n" not in entry.description
        assert entry.meta["input"] in ("any", "image", "text")


def test_list_models_wildcard() -> None:
    assert "mlp" in list_models()
    assert list_models("conv*") == ["convnextv2"]
    assert list_models("nothing*") == []


def test_forward_shapes_and_head(built: tuple[CLModel, tuple[int, ...]]) -> None:
    model, shape = built
    model.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, model.feature_dim)
    assert isinstance(model.head, torch.nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (model.feature_dim, N_CLASSES)
    assert logits.shape == (2, N_CLASSES)
    torch.testing.assert_close(logits, model.forward_head(feats))


def test_hook_layers_pool_to_consistent_width(built: tuple[CLModel, tuple[int, ...]]) -> None:
    model, shape = built
    model.eval()
    assert model.hook_layers, "a model must expose at least one hook layer"
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, path in model.hook_layers.items():
        assert path in modules, f"hook layer {name!r} -> missing module {path!r}"
        assert model.layer(name) is modules[path]
        hook = lambda _m, _i, out, name=name: captured.__setitem__(name, out)  # noqa: E731
        handles.append(modules[path].register_forward_hook(hook))
    widths: dict[str, int] = {}
    try:
        for batch in (2, 3):
            captured.clear()
            with torch.no_grad():
                model(torch.randn(batch, *shape))
            assert set(captured) == set(model.hook_layers)
            for name, out in captured.items():
                pooled = model.pools.get(name, lambda t: t)(out)
                assert pooled.ndim == 2 and pooled.shape[0] == batch, (name, tuple(pooled.shape))
                assert widths.setdefault(name, pooled.shape[1]) == pooled.shape[1]
    finally:
        for h in handles:
            h.remove()
    assert set(model.pools) <= set(model.hook_layers)


def test_gradients_reach_first_layer(built: tuple[CLModel, tuple[int, ...]]) -> None:
    model, shape = built
    model.train()
    model.zero_grad()
    model(torch.randn(2, *shape)).logsumexp(dim=1).sum().backward()
    first_name, first = next(iter(model.named_parameters()))
    assert first.grad is not None and first.grad.abs().sum() > 0, first_name
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused
    model.zero_grad()


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_image_model_rejects_flat_input(name: str) -> None:
    with pytest.raises(ClbenchError, match=r"needs image input \[C,H,W\]; stream input is \(40,\)"):
        create_model(name, input_shape=(40,), n_classes=N_CLASSES)


@pytest.mark.parametrize("name", list_models())
def test_unknown_option_is_named(name: str) -> None:
    with pytest.raises(ClbenchError, match="'bogus_option'"):
        create_model(name, input_shape=(1, 28, 28), n_classes=N_CLASSES, bogus_option=1)


def test_misspelt_option_gets_hint() -> None:
    with pytest.raises(ClbenchError, match="did you mean 'hidden'"):
        create_model("mlp", input_shape=(40,), n_classes=N_CLASSES, hiden=(10,))


@pytest.mark.parametrize("name", list_models())
def test_typo_name_gets_did_you_mean(name: str) -> None:
    with pytest.raises(ClbenchError, match=f"unknown model '{name}x'; did you mean .*'{name}'"):
        create_model(name + "x", input_shape=(1, 28, 28), n_classes=N_CLASSES)


def test_options_change_the_model() -> None:
    m = create_model("mlp", input_shape=(40,), n_classes=3, hidden=(16, 8, 4), dropout=0.1)
    assert list(m.hook_layers) == ["fc1", "fc2", "fc3"] and m.feature_dim == 4
    v = create_model("vit", input_shape=(1, 28, 28), n_classes=3, depth=2, embed_dim=48)
    assert list(v.hook_layers) == ["block0", "block1", "cls"] and v.feature_dim == 48


def test_options_that_cannot_fit_the_input_are_user_errors() -> None:
    with pytest.raises(ClbenchError, match="patch_size"):
        create_model("vit", input_shape=(1, 28, 28), n_classes=3, patch_size=3)
    with pytest.raises(ClbenchError, match="shrinks"):
        create_model("convnextv2", input_shape=(1, 28, 28), n_classes=3, patch_size=4)
    with pytest.raises(ClbenchError, match="at least"):
        create_model("cnn", input_shape=(1, 2, 2), n_classes=3)


def experience(task: int, classes: list[int]) -> SimpleNamespace:
    """The two fields Avalanche's dynamic modules read from an experience."""
    return SimpleNamespace(classes_in_this_experience=classes, task_labels=[task])


def test_multihead_separate_heads_and_task_routing() -> None:
    torch.manual_seed(0)
    model = make_multihead(create_model("mlp", input_shape=(40,), n_classes=2, hidden=(16,)))
    assert model.feature_dim == 16
    model.train()
    model.pre_adapt(None, experience(0, [0, 1]))
    model.pre_adapt(None, experience(1, [0, 1]))
    heads = model.classifier.classifiers
    assert set(heads) == {"0", "1"}
    assert heads["0"].classifier.weight.data_ptr() != heads["1"].classifier.weight.data_ptr()

    model.eval()
    x = torch.randn(4, 40)
    with torch.no_grad():
        mixed = model(x, torch.tensor([0, 1, 0, 1]))
        t0 = model.forward_single_task(x, 0)
        t1 = model.forward_single_task(x, 1)
    assert mixed.shape == (4, 2)
    torch.testing.assert_close(mixed[[0, 2]], t0[[0, 2]])
    torch.testing.assert_close(mixed[[1, 3]], t1[[1, 3]])
    assert not torch.allclose(t0, t1)
    assert (t0 > -1000).all(), "adapted classes must not be masked"

    modules = dict(model.named_modules())
    assert model.hook_layers == {"fc1": "backbone.body.fc1"}
    assert modules[model.hook_layers["fc1"]] is model.layer("fc1")
    assert model.pools == model.backbone.pools


def test_multihead_trains_backbone_and_active_head_only() -> None:
    torch.manual_seed(0)
    model = make_multihead(create_model("cnn", input_shape=(1, 8, 8), n_classes=2))
    model.train()
    model.pre_adapt(None, experience(0, [0, 1]))
    model.pre_adapt(None, experience(1, [2, 3]))  # head 1 grows to 4 outputs
    out = model(torch.randn(2, 1, 8, 8), 1)
    assert out.shape == (2, 4)
    out[:, 2:].sum().backward()
    assert model.classifier.classifiers["1"].classifier.weight.grad is not None
    assert model.classifier.classifiers["0"].classifier.weight.grad is None
    assert model.backbone.conv1[0].weight.grad is not None
