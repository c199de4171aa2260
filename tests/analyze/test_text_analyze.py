"""``clbench analyze`` on a text run: a tiny random Llama trained on text-v1 with
``--keep-checkpoints`` (partial checkpoints of the trained part), then analyzed end to end
through ``cli.main``: the trained part's layers, task probe rows, readout through the
unembedding, the decoded-text report, the null model, and the one-line errors."""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from clbench.analyze.loading import load_run
from clbench.analyze.measures import FEATURE_FORGETTING_METRICS
from clbench.analyze.text import answer_token_heads, row_texts, task_probe_set
from clbench.checkpoints import load_state, save_state_atomic
from clbench.data.text_stream import IGNORE
from clbench.results import load_result
from tests.analyze.test_cli_analyze import call, one_error
from tests.analyze.test_report import check_report

pytest.importorskip("transformers")

SIZES = ["stream.n_train=4", "stream.n_test=8", "stream.n_prose=3"]
ANALYZE = ["--probe-size", "48", "--steps", "60", "--expansion", "2", "--k", "8", "--top", "3",
           "--quiet"]


@pytest.fixture(scope="module")
def text_run(text_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """naive on text-v1 (6 tasks), the top 2 of 4 blocks trained, checkpoints kept."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("textrun")
    argv = ["run", "--stream", "text-v1", "--model", "smollm2-135m", "--strategy", "naive",
            "--seeds", "0", "--keep-checkpoints", "--results", str(root), "--quiet",
            "--data-root", str(text_files["data"]), "--set", f"model.weights={text_files['lm']}",
            "--set", "epochs=2", "--set", "model.train_blocks=2",
            *(x for kv in SIZES for x in ("--set", kv))]
    rc, _, err = call(argv)
    assert rc == 0, err
    return next(root.rglob("seed0.json"))


@pytest.fixture(scope="module")
def analyzed(text_run: Path) -> Path:
    torch.set_num_threads(1)
    rc, _, err = call(["analyze", str(text_run), *ANALYZE])
    assert rc == 0, err
    return text_run


def test_a_text_run_keeps_one_trained_part_per_experience(text_run: Path) -> None:
    data = load_result(text_run)                                  # validates the schema
    block, trained = data["checkpoints"], data["model"]
    assert block["partial"] == "trained part"
    assert block["hook_layers"] == ["block2", "block3", "norm"]
    assert [f["after_experience"] for f in block["files"]] == list(range(6))
    for f in block["files"]:
        state = load_state(text_run.parent / f["path"])
        assert list(state) == trained["trainable_parameters"]
        assert not any("embed_tokens" in k or "layers.0." in k or "layers.1." in k for k in state)


def test_loaded_checkpoints_share_the_frozen_prefix(text_run: Path) -> None:
    run = load_run(text_run)
    assert run.text is not None and run.after == list(range(6)) and len(run.models) == 6
    lms = [m.lm for m in run.models]
    assert all(list(m.hook_layers) == ["block2", "block3", "norm"] for m in run.models)
    assert len({id(m.prefix_cache) for m in lms}) == 1 and lms[0].prefix_cache is not None
    first = dict(lms[0].all_named_parameters())
    trained = set(lms[0].trainable_parameter_names())
    for m in lms[1:]:
        for name, p in m.all_named_parameters():
            assert (p.data_ptr() == first[name].data_ptr()) == (name not in trained), name
    # each model holds its own checkpoint
    for m, f in zip(lms, run.data["checkpoints"]["files"]):
        state = load_state(text_run.parent / f["path"])
        params = dict(m.all_named_parameters())
        assert all(torch.equal(params[k], v) for k, v in state.items())


def test_probe_rows_are_the_tasks_gold_rows(text_run: Path) -> None:
    run = load_run(text_run)
    s = run.stream
    probe = task_probe_set(s, 30, seed=0)                     # 5 of the 8 test rows per task
    assert probe.y.tolist() == [e for e in range(6) for _ in range(5)]
    assert torch.equal(probe.y, probe.experience) and probe.classes_per_exp == [[e] for e in range(6)]
    for r, e in zip(probe.rows.tolist(), probe.y.tolist()):
        assert r in s.test_idx[e].tolist()
        # a gold row: the prompt, then the task's gold answer (and EOS) at the predict slots
        ex = run.text.v1.tasks[e].test[r - int(s.test_idx[e][0])]
        answer = s.y_test[r][s.y_test[r] != IGNORE]
        tok = run.models[0].lm.tokenizer
        gold = tok.decode(tok(ex.answer, add_special_tokens=False).input_ids)  # <unk>: no é
        assert tok.decode(answer[:-1].tolist()).strip() == gold
        assert int(answer[-1]) == tok.eos_token_id and (not ex.choices or ex.answer in ex.choices)
    assert task_probe_set(s, 30, seed=0).rows.tolist() == probe.rows.tolist()     # seeded


def test_readout_heads_are_the_mean_logit_of_each_tasks_answer_tokens(text_run: Path) -> None:
    run = load_run(text_run)
    heads = answer_token_heads(run.models, run.text)           # [T, E, d]
    assert heads.shape == (6, 6, 32)
    x = torch.randn(32, generator=torch.Generator().manual_seed(0))
    logits = run.models[0].head.weight.detach() @ x           # [V]
    eos = run.models[0].lm.tokenizer.eos_token_id
    s = run.stream
    for e, idx in enumerate(s.train_idx):
        y = s.y_train[idx]
        tokens = y[(y != IGNORE) & (y != eos)]
        assert float(heads[0, e] @ x) == pytest.approx(float(logits[tokens].mean()), abs=1e-5)


def test_analyze_a_text_run_writes_the_measures_and_the_report(analyzed: Path) -> None:
    data = load_result(analyzed)
    ff = data["feature_forgetting"]
    assert set(ff["summary"]) == set(FEATURE_FORGETTING_METRICS)
    assert ff["settings"]["layers"] == ["block2", "block3", "norm"]
    assert ff["settings"]["head_layer"] == "norm" and ff["checkpoints"] == list(range(6))
    assert ff["summary"]["ff_mean_readout_drop"] is not None    # readout was measured
    folder = analyzed.parent / ff["analysis_dir"]
    detail = json.loads((folder / "feature_forgetting.json").read_text())
    assert len(detail["top_features"]) == 3 and detail["summary"] == ff["summary"]
    assert all(len(f["readout"]) == 6 for f in detail["top_features"])
    files = check_report(analyzed.parent / ff["report"])
    assert not [p for p in files if p.name.startswith("feature")]   # no images of text rows
    page = (analyzed.parent / ff["report"]).read_text()
    assert page.count("<table class='texts'>") == 3
    # 8 rows per checkpoint per feature, each a decoded probe row titled by its own task
    shown = re.findall(r"<td><b>([^<]+)</b><br><span class='row'>([^<]*)</span>", page)
    assert len(shown) == 3 * 6 * 8
    run = load_run(analyzed)
    probe = task_probe_set(run.stream, 48, seed=0)
    texts = row_texts(probe, run.models[0].lm.tokenizer)
    task_of = {t: run.text.task_names[int(e)] for t, e in zip(texts, probe.y)}
    assert all(task_of[html.unescape(t)] == name for name, t in shown)
    # 48 probe rows, 8 per task; 2 of each task held out of the fit
    assert ff["crosscoder"]["n_fit_rows"] == 36 and ff["crosscoder"]["n_heldout_rows"] == 12


def test_layers_are_chosen_among_the_trained_part(text_run: Path, tmp_path: Path) -> None:
    shutil.copytree(text_run.parent, tmp_path / "run")
    path = tmp_path / "run" / text_run.name
    rc, _, err = call(["analyze", str(path), "--layers", "block3,norm", *ANALYZE])
    assert rc == 0, err
    assert load_result(path)["feature_forgetting"]["settings"]["layers"] == ["block3", "norm"]
    rc, _, err = call(["analyze", str(path), "--layers", "block1", *ANALYZE])
    assert "--layers takes these: block2, block3, norm" in one_error(rc, err)


def test_the_null_model_of_a_text_run_reads_no_forgetting(analyzed: Path) -> None:
    rc, _, err = call(["analyze", str(analyzed), "--null", *ANALYZE])
    assert rc == 0, err
    null = load_result(analyzed)["feature_forgetting_null"]
    s = null["summary"]
    assert null["null"] is True and null["checkpoints"] == list(range(6))
    assert s["ff_mean_capacity_retention"] >= 0.9 and s["ff_frac_capacity_halved"] <= 0.05
    assert abs(s["ff_mean_readout_drop"]) < 0.1
    check_report(analyzed.parent / null["report"])


@pytest.mark.parametrize("change, fragment", [
    ("drop", "lacks 'lm.model.layers.2."),
    ("frozen", "holds 'lm.model.embed_tokens.weight' that does not train"),
    ("shape", "is (4, 32), the model's is (32,)"),
])
def test_a_checkpoint_that_is_not_the_trained_part_is_one_line(
        text_run: Path, tmp_path: Path, change: str, fragment: str) -> None:
    shutil.copytree(text_run.parent, tmp_path / "run")
    path = tmp_path / "run" / text_run.name
    file = path.parent / load_result(path)["checkpoints"]["files"][2]["path"]
    state = load_state(file)
    if change == "drop":
        state.pop(next(iter(state)))
    elif change == "frozen":
        state["lm.model.embed_tokens.weight"] = torch.zeros(3, 32)
    else:
        state["lm.model.norm.weight"] = torch.zeros(4, 32)
    save_state_atomic(state, file)
    rc, _, err = call(["analyze", str(path), *ANALYZE])
    line = one_error(rc, err)
    assert "exp2.pt" in line and fragment in line and "--keep-checkpoints --no-resume" in line
