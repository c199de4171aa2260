"""End to end: ``clbench run --keep-checkpoints`` on a tiny real run, then ``clbench analyze``
through ``cli.main``: checkpoints, the report, the joined metrics, ranking on them, the
held-out FVU, the run's flags, the null model beside the real analysis, and the one-line
errors."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from clbench.analyze.measures import FEATURE_FORGETTING_METRICS
from clbench.checkpoints import load_state
from clbench.cli import main
from clbench.run.config import RunConfig
from clbench.results import load_result, write_json_atomic
from clbench.run.runner import build_model
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.streams import build_stream
from tests.analyze.test_report import check_report

RUN = ["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
       "--set", "epochs=1", "--set", "model.hidden=32,32", "--set", "mono.when=off", "--quiet"]
ANALYZE = ["--probe-size", "200", "--steps", "60", "--expansion", "2", "--k", "8", "--top", "3",
           "--quiet"]


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def one_error(rc: int, err: str) -> str:
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clbench: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same cell with and without --keep-checkpoints: the two result files."""
    torch.set_num_threads(1)
    kept, plain = tmp_path_factory.mktemp("kept"), tmp_path_factory.mktemp("plain")
    assert call([*RUN, "--keep-checkpoints", "--results", str(kept)])[0] == 0
    assert call([*RUN, "--results", str(plain)])[0] == 0
    return next(kept.rglob("seed0.json")), next(plain.rglob("seed0.json"))


@pytest.fixture(scope="module")
def analyzed(runs: tuple[Path, Path]) -> tuple[Path, str]:
    torch.set_num_threads(1)
    rc, out, err = call(["analyze", str(runs[0]), *ANALYZE])
    assert rc == 0, err
    return runs[0], out


def test_checkpoints_are_the_trained_models(runs: tuple[Path, Path]) -> None:
    path, plain = runs
    data = load_result(path)
    block = data["checkpoints"]
    assert block["hook_layers"] == ["fc1", "fc2"] and data["config"]["keep_checkpoints"] is True
    assert [f["after_experience"] for f in block["files"]] == [0, 1, 2, 3, 4]
    assert all((path.parent / f["path"]).is_file() for f in block["files"])
    # keeping checkpoints changes nothing the run measures
    assert data["accuracy_matrix"] == load_result(plain)["accuracy_matrix"]
    assert "checkpoints" not in load_result(plain)
    # each checkpoint, loaded with weights_only, reproduces its row of R
    cfg = RunConfig.from_dict(data["config"])
    stream = build_stream(cfg.stream, seed=cfg.seed)
    for f, row in zip(block["files"], data["accuracy_matrix"]):
        model = build_model(cfg, stream)
        model.load_state_dict(load_state(path.parent / f["path"]))
        model.eval()
        with torch.no_grad():
            for j, idx in enumerate(stream.test_idx):
                pred = model(stream.x_test[idx]).argmax(dim=1)
                acc = float((pred == stream.y_test[idx]).float().mean())
                assert acc == pytest.approx(row[j], abs=1e-6)


def test_analyze_writes_the_report_and_joins_the_metrics(analyzed: tuple[Path, str]) -> None:
    path, out = analyzed
    data = load_result(path)                                  # still a valid result
    ff = data["feature_forgetting"]
    assert set(ff["summary"]) == set(FEATURE_FORGETTING_METRICS)
    for name, hib in FEATURE_FORGETTING_METRICS.items():
        assert data["metrics"][name]["higher_is_better"] is hib
        assert data["metrics"][name]["value"] == ff["summary"][name]
        assert name in out
    assert ff["settings"]["layers"] == ["fc1", "fc2"] and ff["settings"]["head_layer"] == "fc2"
    assert ff["counts"]["n_features"] == 64 and ff["checkpoints"] == [0, 1, 2, 3, 4]
    assert ff["settings"]["crosscoder"]["steps"] == 60 and ff["settings"]["probe_size"] == 200
    assert 0.0 <= ff["summary"]["ff_mean_capacity_retention"] <= 1.0
    folder = path.parent / ff["analysis_dir"]
    assert folder == path.with_name("seed0.analysis")
    files = check_report(path.parent / ff["report"])
    assert sum(p.name.startswith("feature") for p in files) == 3
    detail = json.loads((folder / "feature_forgetting.json").read_text())
    assert len(detail["top_features"]) == 3 and detail["summary"] == ff["summary"]
    cc = TopKCrosscoder.load(folder / "crosscoder.pt")
    assert cc.d_ins == [32] * 10 and cc.n_latents == 64
    # 20% of the 200 probe rows (4 of each of the 10 groups) are held out of the fit
    assert ff["crosscoder"]["n_fit_rows"] == 160 and ff["crosscoder"]["n_heldout_rows"] == 40
    assert ff["summary"]["ff_crosscoder_fvu_heldout"] == ff["crosscoder"]["fvu_heldout"] > 0
    assert ff["settings"]["heldout"] == 0.2 and ff["null"] is False
    # the run's flags travel with the analysis, to the output and the top of the report (this
    # tiny run, 1 epoch of a 32-unit MLP, may well collapse on the later experiences)
    assert isinstance(data["flags"], list) and ff["flags"] == data["flags"]
    shown = ", ".join(data["flags"]) or "none"
    assert re.search(rf"run flags\s+{re.escape(shown)}", out), out
    assert shown in (path.parent / ff["report"]).read_text().split("<h2>Summary</h2>")[0]


def test_the_report_names_the_run_not_its_path(analyzed: tuple[Path, str]) -> None:
    """No absolute (so no temporary) path in a report: it may be committed and moved."""
    path, _ = analyzed
    ff = load_result(path)["feature_forgetting"]
    text = (path.parent / ff["report"]).read_text()
    assert str(path.parent.parent.parent) not in text and "/tmp" not in text
    assert "<h1>Feature-level forgetting: split-digits / mlp / naive" in text and ", seed 0</h1>" in text
    assert "<td>result file</td><td>../seed0.json</td>" in text
    assert text.count("class='note'") >= 4                     # every figure is explained


def test_null_model_goes_beside_the_real_analysis(analyzed: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    """``--null`` analyzes checkpoint 0 repeated into its own folder and block; the real
    block, its metrics and its folder stay as they were. A flag on the run is shown."""
    src, _ = analyzed
    run = tmp_path / "run"
    shutil.copytree(src.parent, run)
    path = run / src.name
    data = load_result(path)
    data["flags"] = ["collapsed:exp4"]                   # as if the run had collapsed
    write_json_atomic(path, data)
    real_report = (run / data["feature_forgetting"]["report"]).read_text()
    rc, out, err = call(["analyze", str(path), "--null", *ANALYZE])
    assert rc == 0, err
    after = load_result(path)
    assert after["feature_forgetting"] == data["feature_forgetting"]
    assert {k: v for k, v in after["metrics"].items() if k.startswith("ff_")} == {
        k: v for k, v in data["metrics"].items() if k.startswith("ff_")}
    assert (run / data["feature_forgetting"]["report"]).read_text() == real_report
    null = after["feature_forgetting_null"]
    assert null["null"] is True and null["settings"]["null"] is True
    assert null["analysis_dir"] == "seed0.analysis_null" and null["checkpoints"] == [0, 1, 2, 3, 4]
    assert null["flags"] == ["collapsed:exp4"] and re.search(r"run flags\s+collapsed:exp4", out)
    check_report(run / null["report"])
    text = (run / null["report"]).read_text()
    assert "(null model)" in text and "Flagged run: collapsed:exp4" in text
    # nothing changed between the checkpoints: no feature of experience 0 loses half its
    # capacity (the planted null case, tests/analyze/test_planted.py, justifies the bound)
    s = null["summary"]
    assert s["ff_frac_first_exp_capacity_halved"] is not None
    assert s["ff_frac_first_exp_capacity_halved"] <= 0.05
    assert s["ff_mean_capacity_retention"] >= 0.9 and s["ff_mean_persistence"] >= 0.95


def test_rank_on_a_feature_forgetting_metric(analyzed: tuple[Path, str]) -> None:
    path, _ = analyzed
    root = path.parents[3]
    rc, out, err = call(["rank", str(root), "--metric", "ff_frac_capacity_halved"])
    assert rc == 0, err
    assert "Ranked on `ff_frac_capacity_halved` (lower is better)" in out
    assert re.search(r"\|\s+ff_frac_capacity_halved\s+\|", out), out   # a column of the table


def test_the_thread_count_is_recorded_and_a_rerun_at_it_gives_the_same_numbers(
        analyzed: tuple[Path, str], tmp_path: Path) -> None:
    """The crosscoder's fit depends on torch's thread count in its last bits (enough to move a
    feature across the "halved" threshold), so analyze runs at --threads 1 unless told, and
    the result says at what count it was made."""
    first = load_result(analyzed[0])["feature_forgetting"]
    assert first["determinism"] == {"torch_num_threads": 1}
    shutil.copytree(analyzed[0].parent, tmp_path / "copy")   # re-analyzed there, not in place
    path = tmp_path / "copy" / analyzed[0].name
    rc, _, err = call(["analyze", str(path), *ANALYZE])
    assert rc == 0, err
    again = load_result(path)["feature_forgetting"]
    timeless = lambda cc: {k: v for k, v in cc.items() if k != "train_seconds"}  # noqa: E731
    assert again["summary"] == first["summary"]
    assert timeless(again["crosscoder"]) == timeless(first["crosscoder"])
    rc, _, err = call(["analyze", str(path), *ANALYZE, "--threads", "2"])
    assert rc == 0, err
    assert load_result(path)["feature_forgetting"]["determinism"] == {"torch_num_threads": 2}
    torch.set_num_threads(1)


def test_k_aux_is_stored_only_when_set(analyzed: tuple[Path, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An analysis at the default AuxK width stores no ``k_aux`` (so it compares equal to those
    made before the setting existed); one made with ``--k-aux`` stores it and trains with it."""
    import clbench.analyze.fit as fit

    seen: list[int | None] = []
    real = fit.train_crosscoder

    def spy(xs, cfg, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append(cfg.k_aux)
        return real(xs, cfg, **kw)

    first = load_result(analyzed[0])["feature_forgetting"]
    assert "k_aux" not in first["settings"]["crosscoder"]
    shutil.copytree(analyzed[0].parent, tmp_path / "copy")
    path = tmp_path / "copy" / analyzed[0].name
    monkeypatch.setattr(fit, "train_crosscoder", spy)
    rc, _, err = call(["analyze", str(path), *ANALYZE, "--k-aux", "2"])
    assert rc == 0, err
    again = load_result(path)["feature_forgetting"]
    assert again["settings"]["crosscoder"]["k_aux"] == 2 and seen == [2]


@pytest.mark.parametrize("case, fragment", [
    ("no-checkpoints", "has no checkpoints; re-run the cell with 'clbench run ... "
                       "--keep-checkpoints --no-resume'"),
    ("unknown-layer", "--layers takes these: fc1, fc2"),
    ("missing-file", "no such result file"),
    ("bad-k", "--k 0: must be at least 1"),
    ("bad-threads", "--threads 0: must be at least 1"),
    ("bad-k-aux", "--k-aux 0: must be at least 1"),
    ("resume-without-checkpoints", "finished without checkpoints; add --no-resume"),
])
def test_bad_input_is_one_line(case: str, fragment: str, runs: tuple[Path, Path]) -> None:
    kept, plain = runs
    argv = {
        "no-checkpoints": ["analyze", str(plain), *ANALYZE],
        "unknown-layer": ["analyze", str(kept), "--layers", "fc9", *ANALYZE],
        "missing-file": ["analyze", str(kept.with_name("seed7.json"))],
        "bad-k": ["analyze", str(kept), "--k", "0"],
        "bad-threads": ["analyze", str(kept), "--threads", "0"],
        "bad-k-aux": ["analyze", str(kept), "--k-aux", "0"],
        "resume-without-checkpoints": [*RUN, "--keep-checkpoints",
                                       "--results", str(plain.parents[3])],
    }[case]
    rc, _, err = call(argv)
    assert fragment in one_error(rc, err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_without_a_gpu_is_one_line(runs: tuple[Path, Path]) -> None:
    rc, _, err = call(["analyze", str(runs[0]), "--device", "cuda"])
    assert "no CUDA GPU is visible here; use --device cpu" in one_error(rc, err)
