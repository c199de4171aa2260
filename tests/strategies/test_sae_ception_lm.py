"""sae-ception on a language model: text-v1's classification tasks, the final trained block, the
prompt's last token; a tiny random Llama and tiny text files in the real Debian formats.

    $ python -m pytest tests/strategies/test_sae_ception_lm.py -q
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from clbench.data.text_classes import NO_CLASS, RowClasses
from clbench.data.text_stream import tokenize_text_v1
from clbench.data.text_tasks import build_text_v1
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.models.lm import PrefixCache
from clbench.run.config import resolve_config
from clbench.run.runner import run
from clbench.sae.capture import LayerTap, capture_prompt_end, prompt_end
from clbench.strategies.sae_ception import (SAECeptionConfig, SAECeptionPlugin,
                                            class_feature_masks)

pytest.importorskip("transformers")

SIZES = ["stream.n_train=3", "stream.n_test=2", "stream.n_prose=3", "epochs=1", "batch_size=8"]


@pytest.fixture(scope="module")
def lm(text_files: dict[str, Path]):  # noqa: ANN201
    model = create_model("smollm2-135m", input_shape=(3, 128), n_classes=1,
                         weights=str(text_files["lm"]), train_blocks="2")
    v1 = build_text_v1(seed=0, n_train=4, n_test=2, n_prose=3, data_root=text_files["data"])
    ts = tokenize_text_v1(v1, model.tokenizer, max_len=128, tokenizer_id=model.fingerprint)
    model.answer_width = int(ts.stream.y_train.shape[1])
    model.prefix_cache = PrefixCache(model)
    return model, ts, RowClasses.of(ts)


def _rows(ts, classes: RowClasses, task: str):  # noqa: ANN001, ANN202
    e = ts.task_names.index(task)
    idx = ts.stream.train_idx[e]
    return ts.stream.x_train[idx], ts.stream.y_train[idx], e


def test_class_ids_are_the_labels_of_the_classification_tasks_only(lm) -> None:  # noqa: ANN001
    _, ts, classes = lm
    assert classes.tasks == [ts.task_names.index("supersense"), ts.task_names.index("fortune-topic")]
    assert classes.n_classes == 8 + 6
    for e, task in enumerate(ts.v1.tasks):
        for split, x, idx, examples in (("train", ts.stream.x_train, ts.stream.train_idx[e],
                                         task.train),
                                        ("test", ts.stream.x_test, ts.stream.test_idx[e], task.test)):
            got = classes.lookup(x[idx]).tolist()
            if task.choices:
                want = [classes.offsets[e] + task.choices.index(ex.answer) for ex in examples]
                assert got == want, (task.name, split)
                assert all(classes.names[c] == f"{task.name}:{ex.answer}"
                           for c, ex in zip(got, examples))
            else:   # translations and definitions: per-example choices, no class
                assert got == [NO_CLASS] * len(examples), task.name
    # a row the stream does not hold has no class, whatever its answer spells
    x, _, _ = _rows(ts, classes, "supersense")
    other = x[:1].clone()
    other[0, 0, 0] = (int(other[0, 0, 0]) + 1) % 20 + 3
    assert classes.lookup(other).tolist() == [NO_CLASS]


def test_prompt_end_is_the_last_prompt_token_never_padding(lm) -> None:  # noqa: ANN001
    _, ts, _ = lm
    x = ts.stream.x_train
    pos = prompt_end(x)
    for row, p in zip(x, pos.tolist()):
        assert row[1, p] == 1 and row[2, p] == 1 and int(row[2, :p].sum()) == 0
    with pytest.raises(ClbenchError, match="packed rows"):
        prompt_end(x[:, 0])


@pytest.mark.parametrize("m,frac", [(256, 0.01), (4608, 0.01), (50, 0.1), (300, 0.05)])
def test_top_frac_keeps_ceil_frac_m_latents_per_class(m: int, frac: float) -> None:
    n = SAECeptionConfig(top_frac=frac).kept(m)
    assert n == math.ceil(frac * m)
    codes, y = torch.rand(40, m), torch.arange(40) % 4
    masks, has = class_feature_masks(codes, y, n, 4)
    assert masks.sum(dim=1).tolist() == [n] * 4 and bool(has.all())
    assert SAECeptionConfig(top_frac=0.0, top_n=25).kept(m) == min(25, m)


def _fitted(model: nn.Module, ts, classes: RowClasses, **cfg) -> SAECeptionPlugin:  # noqa: ANN001
    layer = f"block{model.n_layers - 1}"
    plugin = SAECeptionPlugin(layer, SAECeptionConfig(pool="prompt_end", expansion=8, k=8,
                                                      top_frac=0.05, sae_steps=5, **cfg),
                              seed=0, classes=lambda x, _y: classes.lookup(x))
    x, y, _ = _rows(ts, classes, "supersense")
    assert plugin.fit(model, x, y, seed=3) is not None
    return plugin


def _grads(model: nn.Module, plugin: SAECeptionPlugin, x: torch.Tensor, y: torch.Tensor,
           lam: float) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    plugin.tap = LayerTap(model, plugin.layer, raw=True)
    try:
        loss = nn.CrossEntropyLoss()(model(x), y)
        term = plugin.aux_term(plugin.live(x), x, y)
        assert term is not None and float(term.detach()) > 0
        (loss + lam * term).backward()
    finally:
        plugin.tap.remove()
        plugin.tap = None
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_the_aux_term_reaches_the_trained_blocks(lm) -> None:  # noqa: ANN001
    model, ts, classes = lm
    plugin = _fitted(model, ts, classes)
    x, y, _ = _rows(ts, classes, "supersense")
    g0, g1 = _grads(model, plugin, x, y, 0.0), _grads(model, plugin, x, y, 5.0)
    last, first = f"layers.{model.n_layers - 1}.", f"layers.{model.train_start}."
    moved = {n for n in g0 if not torch.allclose(g0[n], g1[n])}
    assert any(last in n for n in moved)       # the hooked block itself
    assert any(first in n for n in moved)      # and the trained block below it
    assert not any(f"layers.{model.train_start - 1}." in n for n in g1)   # frozen prefix: no grad
    # lam = 0 is the task loss alone
    model.zero_grad(set_to_none=True)
    nn.CrossEntropyLoss()(model(x), y).backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, g0[n])


def test_rows_without_a_class_get_no_aux_term(lm) -> None:  # noqa: ANN001
    model, ts, classes = lm
    plugin = _fitted(model, ts, classes)
    x, y, _ = _rows(ts, classes, "en-fr")
    assert plugin.aux_term(capture_prompt_end(model, plugin.layer, x), x, y) is None
    fresh = SAECeptionPlugin(plugin.layer, plugin.config, classes=plugin.classes_of)
    assert fresh.fit(model, x, y, seed=0) is None and fresh.sae is None


def test_the_random_control_is_seeded_and_differs_from_the_sae_targets(lm) -> None:  # noqa: ANN001
    model, ts, classes = lm
    top = _fitted(model, ts, classes)
    rand = _fitted(model, ts, classes, sharpen="random")
    again = _fitted(model, ts, classes, sharpen="random")
    assert top.masks is not None and rand.masks is not None and again.masks is not None
    has = top.has
    assert torch.equal(rand.masks, again.masks)                  # seeded
    assert not torch.equal(rand.masks[has], top.masks[has])      # other latents
    assert rand.masks.sum(dim=1)[has].tolist() == top.masks.sum(dim=1)[has].tolist()
    # the same SAE (same seed and rows), so the targets differ only by the latent choice
    assert torch.equal(top.sae.W_dec, rand.sae.W_dec) if hasattr(top.sae, "W_dec") else True
    x, y, _ = _rows(ts, classes, "supersense")
    acts = capture_prompt_end(model, top.layer, x)
    from clbench.strategies.sae_ception import sharpened_targets

    cls = classes.lookup(x)
    t_top = sharpened_targets(top.sae, acts, cls, top.masks)
    t_rand = sharpened_targets(rand.sae, acts, cls, rand.masks)
    assert not torch.allclose(t_top, t_rand)


def test_a_text_run_with_sae_ception_records_each_experience(text_files: dict[str, Path]) -> None:
    cfg = resolve_config("text-v1", "sae-ception", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}",
                                    "sae-ception.sae_steps=5"], data_root=str(text_files["data"]))
    p = cfg.strategy_params["sae-ception"]
    assert (p["pool"], p["top_frac"], p["expansion"], p["k"], p["lam"]) == (
        "prompt_end", 0.01, 8, 50, 0.01)
    r = run(cfg)
    assert r.status == "ok", r.error
    tasks = r.stream["tasks"]
    for name, entry in zip(tasks, r.per_experience):
        rec = entry["method"]
        assert rec["sae_ception_layer"] == "block3" and rec["sae_ception_pool"] == "prompt_end"
        if name in ("supersense", "fortune-topic"):
            assert rec["sae_ception_aux"] == "on" and rec["sae_ception_cycles"] == 1
            m = 8 * 32   # the tiny Llama: d = 32
            assert rec["sae_ception_kept"] == [math.ceil(0.01 * m)]
            assert 0.0 <= rec["sae_ception_pre_cycle_accuracy"][0] <= 1.0
        else:
            assert rec["sae_ception_aux"] == "off: no class labels"
            assert rec["sae_ception_cycles"] == 0
    # monosemanticity of the hooked block before and after, on the classification rows
    mono = r.extra["mono_lm"]
    assert mono["layer"] == "block3" and mono["pool"] == "prompt_end"
    for when in ("before", "after"):
        m = mono[when]
        assert m["rows_eval"] == 2 * 2 and m["rows_train"] == 2 * 3   # 2 tasks x n_test, n_train
        assert 0.0 <= m["neuron_u_hy"] <= 1.0 and -1.0 <= m["mono_csi"] <= 1.0
        assert m["sae_fvu"] >= 0.0
    assert mono["before"]["neuron_csi"] != mono["after"]["neuron_csi"]   # the model moved
    from clbench.results import validate

    validate(r.to_json())


def test_bad_settings_on_text_are_one_clear_error(text_files: dict[str, Path]) -> None:
    cfg = resolve_config("text-v1", "sae-ception", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}",
                                    "sae-ception.layer=block0"], data_root=str(text_files["data"]))
    with pytest.raises(ClbenchError, match="frozen prefix"):
        run(cfg)
    with pytest.raises(ClbenchError, match="top_frac"):
        SAECeptionConfig(top_frac=1.5)
    with pytest.raises(ClbenchError, match="pool"):
        SAECeptionConfig(pool="cls")  # type: ignore[arg-type]
