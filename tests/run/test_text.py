"""The text path: text-v1 packed for a tokenizer, the LM's packed forward, scoring, and every
baseline run through it on a tiny random Llama and tiny text files in the real Debian formats.

    $ python -m pytest tests/run/test_text.py -q
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from clbench.data.text_stream import (IGNORE, answer_scores, boundary_tokens, choice_predictions,
                                      greedy_match, tokenize_text_v1)
from clbench.data.text_tasks import build_text_v1, holdout_text
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.models.lm_score import answer_batch, model_answer_loss, score_answers
from clbench.run.config import resolve_config
from clbench.run.runner import run
from clbench.streams import build_stream

pytest.importorskip("transformers")

SIZES = ["stream.n_train=2", "stream.n_test=2", "stream.n_prose=3"]
#: the baselines of issue 14 (the SAE methods have their own tests on this path later)
BASELINES = ["naive", "joint", "cumulative", "ewc", "ewc-online", "si", "lwf", "replay", "agem",
             "der", "gdumb", "replay+ewc"]


@pytest.fixture(scope="module")
def packed(text_files: dict[str, Path]):  # noqa: ANN201
    model = create_model("smollm2-135m", input_shape=(3, 128), n_classes=1,
                         weights=str(text_files["lm"]), train_blocks="2")
    v1 = build_text_v1(seed=0, n_train=3, n_test=3, n_prose=3, data_root=text_files["data"])
    ts = tokenize_text_v1(v1, model.tokenizer, max_len=128, tokenizer_id=model.fingerprint)
    model.answer_width = int(ts.stream.y_train.shape[1])
    return model, ts


def test_packed_rows_hold_the_answer_after_each_predict_position(packed) -> None:  # noqa: ANN001
    model, ts = packed
    s = ts.stream
    assert s.n_experiences == 6 and s.scenario == "instruction-il"
    assert s.x_train.shape[:2] == (18, 3) and s.y_train.shape[0] == 18
    for x, y in zip(s.x_train, s.y_train):
        ids, mask, predict = x
        pos = predict.nonzero().squeeze(1)
        answer = y[y != IGNORE]
        assert len(pos) == len(answer) >= 2            # the answer's tokens and EOS
        assert torch.equal(ids[pos + 1], answer)        # position t predicts token t + 1
        assert int(answer[-1]) == model.tokenizer.eos_token_id
        assert bool(mask[: int(mask.sum())].all()) and int(pos[-1]) == int(mask.sum()) - 2
    # the dataset targets Avalanche balances memories over are the task numbers
    assert s.targets_train.tolist() == [e for e in range(6) for _ in range(3)]


def test_packed_forward_equals_the_full_model_at_the_answer(packed) -> None:  # noqa: ANN001
    model, ts = packed
    x = ts.stream.x_train[:5]
    with torch.no_grad():
        out = model(x)                                            # [B, V, A]
        full = model(x[:, 0], x[:, 1])                            # [B, T, V]
    assert out.shape == (5, len(model.tokenizer), model.answer_width)
    for i in range(5):
        pos = x[i, 2].nonzero().squeeze(1)
        torch.testing.assert_close(out[i, :, :len(pos)].T, full[i, pos], atol=1e-5, rtol=1e-5)


def test_cross_entropy_on_packed_rows_is_the_answer_loss(packed) -> None:  # noqa: ANN001
    model, ts = packed
    e = ts.v1.tasks[0]
    from clbench.data.text_tasks import ANSWER_SEPARATOR

    b = answer_batch(model.tokenizer, [(x.prompt, ANSWER_SEPARATOR + x.answer) for x in e.train])
    with torch.no_grad():
        ours = nn.CrossEntropyLoss()(model(ts.stream.x_train[:3]), ts.stream.y_train[:3])
        ref = model_answer_loss(model, b)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_choice_scores_are_the_reference_log_likelihoods(packed) -> None:  # noqa: ANN001
    model, ts = packed
    e = ts.kinds.index("choice")
    cr = ts.choice_rows[e]
    from clbench.data.text_tasks import ANSWER_SEPARATOR

    pairs = [(x.prompt, ANSWER_SEPARATOR + c) for x in ts.v1.tasks[e].test for c in x.choices]
    with torch.no_grad():
        ours = answer_scores(model(cr.rows.x), cr.rows.y)
    torch.testing.assert_close(ours, score_answers(model, model.tokenizer, pairs), atol=1e-4,
                               rtol=1e-4)
    assert choice_predictions(torch.tensor([0.0, 2.0, 1.0, 5.0, 4.0]), [0, 3, 5]).tolist() == [1, 0]


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("task", range(6))
def test_the_prompt_once_per_example_gives_every_rows_own_score(packed, task: int,  # noqa: ANN001
                                                                cached: bool) -> None:
    from clbench.models.lm import PrefixCache
    from clbench.models.lm_choice import shared_prompt_scores

    model, ts = packed
    cr = ts.choice_rows[task]
    assert cr is not None and len(cr.offsets) > 2
    model.prefix_cache = PrefixCache(model) if cached else None
    try:
        with torch.no_grad():
            rowwise = answer_scores(model(cr.rows.x), cr.rows.y)
        for batch in (1, 2):        # one merged sequence at a time, and several padded together
            merged = shared_prompt_scores(model, cr.rows.x, cr.rows.y, cr.offsets, batch)
            torch.testing.assert_close(merged, rowwise, atol=1e-4, rtol=1e-4)
    finally:
        model.prefix_cache = None
    # a row whose prompt differs from its example's first row: scored row by row, still right
    x = cr.rows.x.clone()
    first_real = int(x[1, 1].sum()) - int((cr.rows.y[1] != IGNORE).sum())
    x[1, 0, first_real - 2] = (x[1, 0, first_real - 2] + 1) % len(model.tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(shared_prompt_scores(model, x, cr.rows.y, cr.offsets),
                                   answer_scores(model(x), cr.rows.y), atol=1e-4, rtol=1e-4)


def test_greedy_match_requires_every_answer_token_and_a_stop() -> None:
    V = 6
    boundary = torch.tensor([False, False, True, False, False, True])   # 2 and 5 end a word
    y = torch.tensor([[3, 4, 2, IGNORE], [3, 4, 2, IGNORE], [3, 4, 2, IGNORE], [1, 2, IGNORE, IGNORE]])

    def logits(preds: list[list[int]]) -> torch.Tensor:
        out = torch.zeros(len(preds), V, 4)
        for i, p in enumerate(preds):
            for j, tok in enumerate(p):
                out[i, tok, j] = 1.0
        return out

    got = greedy_match(logits([[3, 4, 2, 0], [3, 4, 5, 0], [3, 0, 2, 0], [1, 3, 0, 0]]), y, boundary)
    # exact; stops at another boundary token; a wrong answer token; continues the word
    assert got.tolist() == [True, True, False, False]


def test_greedy_match_agrees_with_generation(text_files: dict[str, Path]) -> None:
    """A model taught one answer: teacher-forced greedy match and real greedy decoding agree."""
    from clbench.data.text_stream import encode_rows, pack
    from clbench.models.lm_score import generate_greedy

    model = create_model("smollm2-135m", input_shape=(3, 64), n_classes=1,
                         weights=str(text_files["lm"]), train_blocks="all")
    tok = model.tokenizer
    pairs = [("cat is:", "an animal"), ("sky is:", "blue")]
    rows = pack(encode_rows(tok, pairs, eos=True, max_len=64), tok.pad_token_id, 24, 12)
    model.answer_width = 12
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):   # learn the first pair only
        loss = nn.CrossEntropyLoss()(model(rows.x[:1]), rows.y[:1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        matched = greedy_match(model(rows.x), rows.y, boundary_tokens(tok)).tolist()
    generated = generate_greedy(model, tok, [p for p, _ in pairs], max_new_tokens=12)
    decoded = [g.startswith(" " + a) and (len(g) == len(a) + 1 or not g[len(a) + 1].isalnum())
               for g, (_, a) in zip(generated, pairs)]
    assert matched == decoded and matched[0]


def test_a_copy_shares_the_frozen_prefix_and_trains_its_own_top(packed) -> None:  # noqa: ANN001
    model, _ = packed
    twin = copy.deepcopy(model)
    frozen = dict(model.all_named_parameters())
    for name, p in twin.all_named_parameters():
        same = p.data_ptr() == frozen[name].data_ptr()
        assert same == (not p.requires_grad), name
    names = [n for n, _ in model.named_parameters()]
    assert names == model.trainable_parameter_names() and all("layers.2" in n or "layers.3" in n
                                                              or "model.norm" in n for n in names)


@pytest.mark.parametrize("strategy", BASELINES)
def test_every_baseline_runs_on_text_v1(text_files: dict[str, Path], strategy: str) -> None:
    extra = ["gdumb.epochs=2"] if strategy == "gdumb" else []
    cfg = resolve_config("text-v1", strategy, "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}", "epochs=1",
                                    "batch_size=8", *extra], data_root=str(text_files["data"]))
    r = run(cfg)
    assert r.status == "ok", r.error
    rows = 1 if strategy == "joint" else 6   # joint trains once, on every task together
    assert len(r.random_init_accuracy) == 6 and len(r.accuracy_matrix) == rows
    assert all(len(row) == 6 and all(0.0 <= a <= 1.0 for a in row) for row in r.accuracy_matrix)
    m = {k: v["value"] for k, v in r.metrics.items()}
    assert math.isfinite(m["general_ppl_ratio"]) and m["general_ppl_before"] > 1.0
    assert m["general_ppl_ratio"] == pytest.approx(m["general_ppl_after"] / m["general_ppl_before"])
    trained = r.extra["model"]
    assert trained["trainable_parameters"] and trained["n_trainable"] < trained["n_parameters"]
    if strategy in ("ewc", "ewc-online", "si", "replay+ewc"):
        # a Fisher (or SI's importances) and an anchor of the trained part, never of the frozen
        tensors = max(p["state_bytes_by_kind"].get("tensors", 0) for p in r.per_experience)
        fp32 = 4 * trained["n_trainable"]
        assert 2 * fp32 <= tensors <= 1.05 * 2 * 6 * fp32   # at most one pair per task


def test_runs_of_one_process_share_the_frozen_prefix(text_files: dict[str, Path]) -> None:
    from clbench.models import lm as lm_mod
    lm_mod._SHARED.clear()
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}", "epochs=1"],
                         data_root=str(text_files["data"]))
    from clbench.run import text as text_mod
    text_mod._PRETRAINED.clear()
    first, second = run(cfg), run(cfg)
    p1, p2 = first.extra["prefix"], second.extra["prefix"]
    # the pretrained row is scored once per process, per model, stream and set-up
    assert not first.extra["pretrained_row_reused"] and second.extra["pretrained_row_reused"]
    assert second.random_init_accuracy == first.random_init_accuracy
    other = run(resolve_config("text-v1", "naive", "smollm2-135m", seed=1,
                               overrides=[*SIZES, f"model.weights={text_files['lm']}", "epochs=1"],
                               data_root=str(text_files["data"])))
    assert not other.extra["pretrained_row_reused"]   # another seed: another split
    # every training and test row was computed before timing, once per process
    assert p1["rows_computed"] > 0 and p2["rows_computed"] == 0
    assert p2["rows_held"] >= p1["rows_held"] >= p1["rows_computed"]
    assert second.accuracy_matrix == first.accuracy_matrix
    assert second.extra["general_ppl"] == pytest.approx(first.extra["general_ppl"], rel=1e-6)
    lm_mod._SHARED.clear()
    text_mod._PRETRAINED.clear()


def test_a_later_process_loads_the_frozen_prefix_from_disk(
        text_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clbench.models import lm as lm_mod
    from clbench.models import prefix_store
    from clbench.run import text as text_mod
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(prefix_store.ENV_SWITCH, "1")
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}", "epochs=1"],
                         data_root=str(text_files["data"]))
    results = []
    for _ in range(2):   # each as in a fresh process: nothing held in memory
        lm_mod._SHARED.clear()
        text_mod._PRETRAINED.clear()
        results.append(run(cfg))
    first, second = results
    p1, p2 = first.extra["prefix"], second.extra["prefix"]
    assert p1["rows_loaded"] == 0 and p1["rows_computed"] == p1["rows_held"] > 0
    assert p2["rows_computed"] == 0 and p2["rows_loaded"] == p1["rows_held"]
    assert len(list((tmp_path / "cache" / "prefix").glob("prefix-*.pt"))) == 1
    assert second.accuracy_matrix == first.accuracy_matrix
    assert second.extra["general_ppl"] == pytest.approx(first.extra["general_ppl"], rel=1e-6)
    lm_mod._SHARED.clear()
    text_mod._PRETRAINED.clear()


def test_text_stream_needs_a_language_model() -> None:
    with pytest.raises(ClbenchError, match="needs a language model: use --model smollm2-135m"):
        resolve_config("text-v1", "naive", "mlp")
    with pytest.raises(ClbenchError, match="is a language model; stream .split-digits. needs an "
                                           "image.*use --model mlp"):
        resolve_config("split-digits", "naive", "smollm2-135m")
    with pytest.raises(ClbenchError, match="tokenized by its language model"):
        build_stream("text-v1")


def test_keep_checkpoints_keeps_the_trained_part_after_each_experience(
        text_files: dict[str, Path], tmp_path: Path) -> None:
    """One partial checkpoint per experience, of exactly the trained names; loaded onto the
    rebuilt model, checkpoint j scores row j of R (it is the model after experience j)."""
    from clbench.analyze.loading import load_trained_part
    from clbench.checkpoints import load_state
    from clbench.results import load_result, write_result
    from clbench.run.text import TextScorer, build_text_run

    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}", "epochs=2",
                                    "keep_checkpoints=true"], data_root=str(text_files["data"]))
    r = run(cfg)
    assert r.status == "ok", r.error
    path = write_result(r, tmp_path)
    data, base = load_result(path), path.parent             # load_result validates the schema
    block, trained = data["checkpoints"], data["model"]
    assert block["partial"] == "trained part" and data["config"]["keep_checkpoints"] is True
    assert [f["after_experience"] for f in block["files"]] == list(range(6))
    start = trained["train_start"]
    assert block["hook_layers"] == [f"block{i}" for i in range(start, 4)] + ["norm"]
    states = [load_state(base / f["path"]) for f in block["files"]]
    for state in states:
        assert list(state) == trained["trainable_parameters"]      # nothing frozen, nothing less
        assert sum(t.numel() for t in state.values()) == trained["n_trainable"]
    assert any(not torch.equal(states[0][k], states[-1][k]) for k in states[0])   # it trained
    model, ts = build_text_run(cfg)
    scorer = TextScorer(ts, model.tokenizer, cfg.train["eval_batch_size"])
    for j, state in enumerate(states):
        load_trained_part(model, state, base / block["files"][j]["path"])
        assert scorer.accuracies(model) == pytest.approx(data["accuracy_matrix"][j], abs=1e-9)


def test_lora_trains_adapters_only_and_starts_as_the_model(text_files: dict[str, Path]) -> None:
    plain = create_model("smollm2-135m", input_shape=(3, 64), n_classes=1,
                         weights=str(text_files["lm"]), train_blocks="2")
    lora = create_model("smollm2-135m", input_shape=(3, 64), n_classes=1,
                        weights=str(text_files["lm"]), train_blocks="2", adapter="lora",
                        lora_rank=4)
    names = lora.trainable_parameter_names()
    assert names and all("lora_" in n for n in names)
    assert all(".layers.2." in n or ".layers.3." in n for n in names)   # the top 2 blocks only
    assert lora.describe()["adapter"] == "lora"
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(lora(ids), plain(ids))   # B = 0: unchanged until trained
    cfg = resolve_config("text-v1", "ewc", "smollm2-135m", seed=0,
                         overrides=[*SIZES, f"model.weights={text_files['lm']}",
                                    "model.adapter=lora", "model.lora_rank=4", "epochs=1", "batch_size=8"],
                         data_root=str(text_files["data"]))
    r = run(cfg)
    assert r.status == "ok", r.error
    assert r.extra["model"]["trainable_parameters"] == names
    with pytest.raises(ClbenchError, match="model.adapter='qlora': choose one of none, lora"):
        create_model("smollm2-135m", input_shape=(3, 64), n_classes=1,
                     weights=str(text_files["lm"]), adapter="qlora")


def test_cli_runs_text_v1_and_ranks_it(text_files: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from clbench.cli import main
    from clbench.results import load_result

    args = ["run", "--stream", "text-v1", "--strategy", "naive,ewc", "--seeds", "0", "--quiet",
            "--results", str(tmp_path), "--data-root", str(text_files["data"]),
            "--set", f"model.weights={text_files['lm']}", "--set", "epochs=1",
            "--set", "batch_size=8",
            *(x for kv in SIZES for x in ("--set", kv))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "ewc" in out and "2 results in" in out
    paths = sorted(tmp_path.glob("text-v1/smollm2-135m/*/seed0.json"))
    # the overrides differ from the defaults, so both paths carry the same settings tag
    assert [p.parent.name.split("@")[0] for p in paths] == ["ewc", "naive"]
    assert len({p.parent.name.split("@")[1] for p in paths}) == 1
    r = load_result(paths[0])
    assert r["stream"]["tasks"][0] == "en-fr" and r["stream"]["scenario"] == "instruction-il"
    assert "general_ppl_ratio" in r["metrics"] and len(r["random_init_accuracy"]) == 6
    # the ranked table of a text stream shows general ability; an image stream's does not
    assert main(["rank", str(tmp_path)]) == 0
    assert "prose ppl ratio" in capsys.readouterr().out
    # a second run resumes: nothing is re-run
    assert main(args) == 0 and "2 results in" in capsys.readouterr().out
    # a method hooked in the frozen prefix: a clear error, no result file
    bad = [a if a != "naive,ewc" else "sae-ception" for a in args] + [
        "--set", "sae-ception.layer=block0"]
    assert main(bad) == 2
    assert "frozen prefix" in capsys.readouterr().err
    # no result and no lock (the cell's folder itself may remain, empty, from its lock)
    assert not [p for p in tmp_path.glob("text-v1/smollm2-135m/sae-ception*/*")]
    assert not list(tmp_path.glob("text-v1/smollm2-135m/sae-ception*/.*"))


def test_validation_holds_out_training_examples_and_never_reads_the_test_set(
        text_files: dict[str, Path]) -> None:
    v1 = build_text_v1(seed=0, n_train=4, n_test=2, n_prose=3, data_root=text_files["data"])
    val = holdout_text(v1, 0.25, seed=0)
    assert val.fingerprint != v1.fingerprint and val.prose == v1.prose
    for t, h in zip(v1.tasks, val.tasks):
        assert len(h.test) == 1 and len(h.train) == 3
        assert sorted(map(repr, h.train + h.test)) == sorted(map(repr, t.train))
        assert not set(map(repr, h.test)) & set(map(repr, t.test))
    assert holdout_text(v1, 0.25, seed=0) == val            # seeded
    with pytest.raises(ValueError, match="must be in"):
        holdout_text(v1, 1.0, seed=0)
    # the runner scores the validation examples in place of the test set
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0,
                         overrides=["stream.n_train=4", "stream.n_test=2", "stream.n_prose=3",
                                    f"model.weights={text_files['lm']}", "epochs=1",
                                    "validation=0.25"], data_root=str(text_files["data"]))
    r = run(cfg)
    assert r.status == "ok", r.error
    assert r.config["train"]["validation"] == 0.25 and len(r.accuracy_matrix) == 6
    assert all(a in (0.0, 1.0) for row in r.accuracy_matrix for a in row)   # one example each
