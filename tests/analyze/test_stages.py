"""The analysis stages one by one: probe set, layer choice over the model registry, source
normalisation, checkpoint files, settings."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clbench.analyze.pipeline import AnalyzeSettings, check_device
from clbench.analyze.probe import heldout_split, probe_set
from clbench.analyze.sources import head_input_layer, make_sources, pick_layers
from clbench.checkpoints import (
    CheckpointSet,
    checkpoint_files,
    load_state,
    save_checkpoints,
    validate_block,
)
from clbench.errors import ClbenchError
from clbench.models import MODELS, create_model
from clbench.streams import Stream

SHAPE = {"any": (1, 28, 28), "image": (1, 28, 28)}
#: the layer whose pooled output is what the head reads, where the model has one
HEAD_INPUT = {"mlp": "fc2", "vit": "cls", "cnn": "fc", "resnet18": "layer4", "convnextv2": "head"}


def test_probe_is_balanced_seeded_and_checked(digits_stream: Stream) -> None:
    p = probe_set(digits_stream, size=200, seed=3)
    assert len(p) == 200 and p.x.shape[1:] == digits_stream.x_test.shape[1:]
    assert torch.bincount(p.y, minlength=10).tolist() == [20] * 10
    assert torch.bincount(p.experience).tolist() == [40] * 5
    for e, classes in enumerate(digits_stream.classes_per_exp):   # rows are that exp's test rows
        assert set(p.y[p.experience == e].tolist()) == set(classes)
    assert torch.equal(p.x, digits_stream.x_test[p.rows])
    assert torch.equal(probe_set(digits_stream, 200, 3).rows, p.rows)
    assert not torch.equal(probe_set(digits_stream, 200, 4).rows, p.rows)
    with pytest.raises(ClbenchError, match="--probe-size 5 is below one row per"):
        probe_set(digits_stream, size=5, seed=0)


def test_heldout_split_is_balanced_disjoint_and_seeded(digits_stream: Stream) -> None:
    p = probe_set(digits_stream, size=200, seed=3)             # 10 groups of 20 rows
    fit, held = heldout_split(p, 0.2, seed=3)
    assert len(fit) == 160 and len(held) == 40
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(200))
    assert torch.bincount(p.y[held], minlength=10).tolist() == [4] * 10
    assert torch.equal(heldout_split(p, 0.2, seed=3)[1], held)
    assert not torch.equal(heldout_split(p, 0.2, seed=4)[1], held)
    assert len(heldout_split(p, 0.0, seed=3)[1]) == 0
    # every group keeps a fit row, however much is held out
    tiny = probe_set(digits_stream, size=10, seed=0)           # one row per group
    assert len(heldout_split(tiny, 0.9, seed=0)[0]) == 10
    with pytest.raises(ClbenchError, match="--heldout 1.0: must be in"):
        heldout_split(p, 1.0, seed=0)


@pytest.mark.parametrize("name", [e.name for e in MODELS if e.meta["input"] != "text"])
def test_head_input_layer_and_default_layers(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, SHAPE[MODELS.get(name).meta["input"]], 10).eval()
    head = head_input_layer(model, torch.randn(4, 1, 28, 28))
    assert head == HEAD_INPUT.get(name)
    layers = pick_layers(model, None, head)
    names = list(model.hook_layers)
    assert 1 <= len(layers) <= 3 and layers == [n for n in names if n in layers]
    if head:
        assert layers[-1] == head
    first = names[0]
    assert pick_layers(model, [first], head) == [first] + ([head] if head and head != first else [])
    with pytest.raises(ClbenchError, match="unknown layer 'nope'"):
        pick_layers(model, ["nope"], head)


def test_default_layers_of_the_vit_and_mlp() -> None:
    vit = create_model("vit", (1, 28, 28), 10)
    assert pick_layers(vit, None, "cls") == ["block2", "block4", "cls"]
    mlp = create_model("mlp", (1, 28, 28), 10, hidden=(8, 8, 8))
    assert pick_layers(mlp, None, "fc3") == ["fc1", "fc2", "fc3"]


def test_sources_are_scaled_to_unit_mean_square_norm() -> None:
    g = torch.Generator().manual_seed(0)
    raw = [torch.randn(100, 3, generator=g) * 5 + 2, torch.randn(100, 4, generator=g) * 0.1,
           torch.randn(100, 3, generator=g), torch.randn(100, 4, generator=g)]
    src = make_sources(raw, ["a", "b"], [0, 3], head_layer="b")
    assert src.widths == [3, 4, 3, 4] and src.name(1) == "a@exp3" and src.name(2) == "b@exp0"
    for a, r, c in zip(src.acts, raw, src.scales):
        centred = a - a.mean(dim=0)
        assert centred.pow(2).sum(dim=1).mean() == pytest.approx(1.0, rel=1e-5)
        torch.testing.assert_close(a * c, r)
    with pytest.raises(ClbenchError, match="b@exp3 is constant on the probe"):
        make_sources(raw[:3] + [torch.ones(100, 4)], ["a", "b"], [0, 3], head_layer=None)


def test_source_scales_come_from_the_fit_rows_only() -> None:
    g = torch.Generator().manual_seed(0)
    raw = [torch.randn(100, 3, generator=g) for _ in range(2)]
    raw[0][50:] *= 10                                         # held-out rows: another scale
    fit = torch.arange(50)
    src = make_sources(raw, ["a"], [0, 1], head_layer=None, scale_rows=fit)
    only_fit = make_sources([r[:50] for r in raw], ["a"], [0, 1], head_layer=None)
    assert src.scales == pytest.approx(only_fit.scales)
    sub = src.subset(fit)
    assert sub.scales == src.scales and sub.acts[0].shape == (50, 3)
    torch.testing.assert_close(sub.acts[0], only_fit.acts[0])


def test_checkpoints_round_trip_and_refuse_what_is_missing(tmp_path: Path) -> None:
    model = create_model("mlp", (4,), 3, hidden=(5,))
    ckpts = CheckpointSet(list(model.hook_layers))
    ckpts.add(0, model)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    ckpts.add(1, model)
    result = tmp_path / "seed0.json"
    block = save_checkpoints(result, ckpts)
    assert validate_block(block) is None and block["hook_layers"] == ["fc1"]
    assert [f["path"] for f in block["files"]] == ["seed0.ckpt/exp0.pt", "seed0.ckpt/exp1.pt"]
    assert sorted(p.name for p in (tmp_path / "seed0.ckpt").iterdir()) == ["exp0.pt", "exp1.pt"]
    files = checkpoint_files(result, {"checkpoints": block})
    s0, s1 = load_state(files[0][1]), load_state(files[1][1])
    torch.testing.assert_close(s1["head.weight"], s0["head.weight"] + 1.0)
    torch.testing.assert_close(s1["head.weight"], model.head.weight.detach())
    with pytest.raises(ClbenchError, match="has no checkpoints"):
        checkpoint_files(result, {})
    (tmp_path / "seed0.ckpt" / "exp1.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ClbenchError, match="exp1.pt: not a readable checkpoint"):
        load_state(files[1][1])
    (tmp_path / "seed0.ckpt" / "exp1.pt").unlink()
    with pytest.raises(ClbenchError, match="exp1.pt is missing"):
        checkpoint_files(result, {"checkpoints": block})
    assert validate_block({"files": [{"path": 3}], "hook_layers": []}) is not None


def test_settings_are_checked() -> None:
    with pytest.raises(ClbenchError, match="--probe-size 0: must be at least 1"):
        AnalyzeSettings(probe_size=0)
    with pytest.raises(ClbenchError, match="--heldout -0.1: must be in"):
        AnalyzeSettings(heldout=-0.1)
    assert AnalyzeSettings().block == "feature_forgetting"
    assert AnalyzeSettings(null=True).block == "feature_forgetting_null"
    with pytest.raises(ClbenchError, match="--device 'tpu'"):
        check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ClbenchError, match="no CUDA GPU is visible here; use --device cpu"):
            check_device("cuda")
