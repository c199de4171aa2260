"""sae-reg in its own regime: a language model, a pretrained SAE read on every token, text-v1;
a tiny random Llama and tiny text files in the real Debian formats.

    $ python -m pytest tests/strategies/test_sae_reg_lm.py -q
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from clbench.data.text_stream import tokenize_text_v1
from clbench.data.text_tasks import build_text_v1
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.run.config import resolve_config
from clbench.run.runner import run
from clbench.sae.capture import capture_tokens, hook_module
from clbench.sae.topk import TopKSAE
from tests.data.text_formats import write_text_root
from tests.models.conftest import save_tiny_lm
from tests.sae.test_lm_fit import EXTRA

pytest.importorskip("transformers")

SIZES = ["stream.n_train=2", "stream.n_test=2", "stream.n_prose=3", "epochs=1", "batch_size=8"]
#: a pretrained SAE the tiny files can feed: glosses only (they hold no free KJV passage)
TINY_SAE = ["sae-reg.corpus_passages=0", "sae-reg.corpus_glosses=6", "sae-reg.sae_steps=5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saereg-lm")
    write_text_root(root / "data", extra_synsets=EXTRA)
    return {"lm": save_tiny_lm(root / "lm"), "data": root / "data"}


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _cfg(files: dict[str, Path], *extra: str):  # noqa: ANN202
    return resolve_config("text-v1", "sae-reg", "smollm2-135m", seed=0,
                          overrides=[*SIZES, f"model.weights={files['lm']}", *extra],
                          data_root=str(files["data"]))


def test_text_family_defaults_are_the_pretrained_sae_on_every_token(files) -> None:  # noqa: ANN001
    from clbench.sae.lm_fit import LMSAESettings

    p = _cfg(files).strategy_params["sae-reg"]
    s = LMSAESettings(layer="")
    assert (p["sae_path"], p["pool"]) == ("pretrained", "codes")
    assert (p["expansion"], p["k"], p["sae_steps"]) == (s.expansion, s.k, s.steps)
    # elsewhere the SAE is still fitted after experience 1 on pooled activations
    q = resolve_config("split-digits", "sae-reg", "mlp", 0, []).strategy_params["sae-reg"]
    assert (q["sae_path"], q["pool"]) == ("", "inputs")


def test_the_pretrained_sae_is_fitted_once_recorded_and_reused(files, cache: Path) -> None:  # noqa: ANN001
    first = run(_cfg(files, *TINY_SAE))
    assert first.status == "ok", first.error
    second = run(_cfg(files, *TINY_SAE))
    assert second.status == "ok", second.error
    r1 = [p["method"] for p in first.per_experience]
    r2 = [p["method"] for p in second.per_experience]
    fp = r1[0]["sae_reg_sae_fingerprint"]
    assert fp.startswith("sha256:") and all(r["sae_reg_sae_fingerprint"] == fp for r in r1 + r2)
    assert not r1[0]["sae_reg_sae_reused"] and r2[0]["sae_reg_sae_reused"]
    assert len(list(cache.glob("sae/*/sae.pt"))) == 1
    # the fit neither changes the run's own draws nor is refitted: the reruns are identical
    assert second.accuracy_matrix == first.accuracy_matrix
    # one mask per experience, of latents of the pretrained SAE (expansion x d)
    d = 32
    assert all(r["sae_reg_n_latents"] == 8 * d for r in r1)
    sizes = [r["sae_reg_mask_size"] for r in r1]
    assert sizes == sorted(sizes) and 0 < sizes[0] < 8 * d
    assert all(0.0 <= r["sae_reg_fvu"] < 1.0 for r in r1)   # a real dictionary of these tokens


@pytest.mark.parametrize("dictionary, width", [("random", 8 * 32), ("neurons", 32)])
def test_dictionary_controls_run_on_text_v1(files, cache: Path, dictionary: str,  # noqa: ANN001
                                            width: int) -> None:
    r = run(_cfg(files, f"sae-reg.dictionary={dictionary}"))
    assert r.status == "ok", r.error
    records = [p["method"] for p in r.per_experience]
    assert len(records) == 6 and all(m["sae_reg_n_latents"] == width for m in records)
    assert not list(cache.glob("sae/*/sae.pt"))   # a control never fits the pretrained SAE


@pytest.fixture(scope="module")
def packed(files: dict[str, Path]):  # noqa: ANN201
    model = create_model("smollm2-135m", input_shape=(3, 128), n_classes=1,
                         weights=str(files["lm"]), train_blocks="2").double().eval()
    v1 = build_text_v1(seed=0, n_train=3, n_test=3, n_prose=3, data_root=files["data"])
    ts = tokenize_text_v1(v1, model.tokenizer, max_len=128, tokenizer_id=model.fingerprint)
    model.answer_width = int(ts.stream.y_train.shape[1])
    return model, ts


def test_token_features_are_the_mean_code_over_real_tokens(packed) -> None:  # noqa: ANN001
    from clbench.strategies.sae_reg import SAEFeatures

    model, ts = packed
    x, y = ts.stream.x_train[:4], ts.stream.y_train[:4]
    torch.manual_seed(0)
    sae = TopKSAE(32, 64, 4, seed=1).double()
    feats = SAEFeatures("block2", sae, pool="codes")
    f, g, fired = feats.values_and_grads(model, nn.CrossEntropyLoss(), x, y,
                                         torch.zeros(4, dtype=torch.long))
    assert f.shape == g.shape == fired.shape == (4, 64)
    for n in range(4):
        h = capture_tokens(model, "block2", x[n:n + 1])               # [T_n real, 32]
        assert len(h) == int(x[n, 1].sum())
        codes = torch.relu(sae.pre_activations(h))
        assert torch.allclose(f[n], codes.mean(dim=0), atol=1e-10)
        assert torch.equal(fired[n], (sae.encode(h) != 0).any(dim=0))
    feats.attach(model)
    try:
        model(x)
        assert torch.allclose(feats.live(model), f, atol=1e-10)
        assert torch.allclose(feats.reference(x), f, atol=1e-10)
        # theta* is frozen for the experience: a row seen before is looked up, not re-run
        runs: list[int] = []
        inner = feats._reference
        feats._reference = lambda rows: (runs.append(len(rows)), inner(rows))[1]  # type: ignore
        again = feats.reference(torch.cat([x[[3, 1]], ts.stream.x_train[4:6]]))
        assert runs == [2]   # only the two new rows ran
        assert torch.allclose(again[:2], f[[3, 1]], atol=1e-10)
        assert torch.allclose(again[2:], inner(ts.stream.x_train[4:6]), atol=1e-10)
    finally:
        feats.detach()
    assert feats._ref == {}   # dropped with theta*


def test_token_feature_gradients_match_finite_differences(packed) -> None:  # noqa: ANN001
    """g_ni = sum_t 1[z_nti != 0] <W_dec[i], dl_n/dh_nt>: the derivative of the loss along
    decoder direction i added at every token where latent i is in the code."""
    from clbench.strategies.sae_reg import SAEFeatures

    model, ts = packed
    x, y = ts.stream.x_train[:1], ts.stream.y_train[:1]
    sae = TopKSAE(32, 64, 4, seed=1).double()
    feats = SAEFeatures("block2", sae, pool="codes")
    crit = nn.CrossEntropyLoss()
    _, g, fired = feats.values_and_grads(model, crit, x, y, torch.zeros(1, dtype=torch.long))
    assert g.abs().sum() > 0
    h = capture_tokens(model, "block2", x)
    on = sae.encode(h) != 0                                           # [T, m]

    def loss_with_shift(i: int, eps: float) -> float:
        def hook(_m, _inp, out):  # noqa: ANN001, ANN202
            shift = torch.zeros_like(out)
            real = x[0, 1].bool()[:out.shape[1]]
            shift[0, real] = eps * on[:, i:i + 1].double() * sae.W_dec[i]
            return out + shift
        handle = hook_module(model, "block2").register_forward_hook(hook)
        with torch.no_grad():
            out = model(x)
        handle.remove()
        return crit(out, y).item()

    # Llama's RMSNorm computes in float32 even in a float64 model: a step of 1e-3, not 1e-5
    for i in [int(j) for j in fired[0].nonzero()[:3, 0]]:
        fd = (loss_with_shift(i, 1e-3) - loss_with_shift(i, -1e-3)) / 2e-3
        assert g[0, i].item() == pytest.approx(fd, rel=2e-3, abs=1e-7)
    assert torch.all(g[0, ~fired[0]] == 0)


@pytest.mark.parametrize("dictionary", ["sae", "neurons"])
def test_the_penalty_reads_only_the_masked_latents_exactly(packed, dictionary: str
                                                           ) -> None:  # noqa: ANN001
    """live(idx) computes the mask's columns only (others 0) and the sparse decode of the
    ablation; both equal the dense computation, values and gradients."""
    from clbench.strategies.sae_reg import NeuronBasis, SAEFeatures, _per_token

    model, ts = packed
    x = ts.stream.x_train[:4]
    sae = (TopKSAE(32, 64, 4, seed=1) if dictionary == "sae" else NeuronBasis(32)).double()
    feats = SAEFeatures("block2", sae, pool="codes")
    idx = torch.tensor([0, 5, 9, 17, 30])
    feats.attach(model)
    try:
        model(x)
        raw = feats.tap.out
        full, part = feats.live(model), feats.live(model, idx)
        off = torch.ones(sae.n_latents, dtype=torch.bool)
        off[idx] = False
        assert torch.all(part[:, off] == 0)
        torch.testing.assert_close(part[:, idx], full[:, idx], atol=1e-12, rtol=1e-10)
        ga, = torch.autograd.grad(full[:, idx].pow(2).sum(), raw, retain_graph=True)
        gb, = torch.autograd.grad(part[:, idx].pow(2).sum(), raw, retain_graph=True)
        torch.testing.assert_close(ga, gb, atol=1e-12, rtol=1e-10)
        keep = torch.zeros(sae.n_latents, dtype=raw.dtype)
        keep[idx] = 1
        dense = (_per_token(sae.encode, raw) * keep) @ sae.W_dec
        sparse = feats._masked_part(raw, idx)
        torch.testing.assert_close(sparse, dense, atol=1e-12, rtol=1e-10)
        gd, = torch.autograd.grad(dense.pow(2).sum(), raw, retain_graph=True)
        gs, = torch.autograd.grad(sparse.pow(2).sum(), raw)
        torch.testing.assert_close(gs, gd, atol=1e-12, rtol=1e-10)
    finally:
        feats.detach()


@pytest.mark.parametrize("layer", ["block2", "block3", "norm"])
def test_the_ablate_guide_resumes_above_the_layer_as_a_full_forward_would(packed, layer: str
                                                                          ) -> None:  # noqa: ANN001
    """The guide's forward runs only the blocks above L on the training forward's tapped
    output; its output and parameter gradients equal the whole forward run again with the
    ablation hook."""
    from clbench.strategies.sae_reg import SAEFeatures

    model, ts = packed
    x, y = ts.stream.x_train[:4], ts.stream.y_train[:4]
    sae = TopKSAE(32, 64, 4, seed=1).double()
    feats = SAEFeatures(layer, sae, pool="codes")
    idx = torch.tensor([0, 5, 9, 17, 33, 60])
    crit, t = nn.CrossEntropyLoss(), torch.zeros(4, dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]
    feats.attach(model)
    try:
        model(x)   # the training forward: fills the tap
        fast = feats.ablated_forward(model, idx, x, t)
        g_fast = torch.autograd.grad(crit(fast, y), params, allow_unused=True)
        handle = feats.ablation_hook(model, idx)
        try:
            slow = model(x)
        finally:
            handle.remove()
        g_slow = torch.autograd.grad(crit(slow, y), params, allow_unused=True)
    finally:
        feats.detach()
    torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)
    assert not torch.allclose(slow, model(x))   # the ablation changes the output
    for a, b in zip(g_fast, g_slow):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("override, fragment", [
    ("sae-reg.layer=block0", "frozen prefix"),
    ("sae-reg.pool=tokens", "choose one of inputs, codes"),
    ("sae-reg.corpus_glosses=-1", "must be >= 0"),
])
def test_bad_settings_on_text_are_one_line_errors(files, cache: Path, override: str,  # noqa: ANN001
                                                  fragment: str) -> None:
    with pytest.raises(ClbenchError, match=re.escape(fragment)) as err:
        r = run(_cfg(files, *TINY_SAE, override))
        if r.status != "ok":   # a build error comes back as the run's error
            raise ClbenchError(r.error or "")
    assert "\n" not in str(err.value).strip()


def test_pretrained_needs_a_language_model() -> None:
    from clbench.strategy_api import STRATEGIES, BuildContext
    from clbench.streams import build_stream

    stream = build_stream("split-digits", seed=0)
    model = create_model("mlp", stream.input_shape, stream.n_classes)
    ctx = BuildContext(stream=stream, model=model, batch_size=32, epochs=1, seed=0)
    cfg = resolve_config("split-digits", "sae-reg", "mlp", 0, ["sae-reg.sae_path=pretrained"])
    with pytest.raises(ClbenchError, match="needs a language model"):
        STRATEGIES.get("sae-reg").obj.build(cfg.strategy_params["sae-reg"], ctx)
