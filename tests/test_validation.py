"""Loaded results are refused when they cannot be true (clbench.validation): a direction other than
the registry's, a value outside its metric's range or not finite, a number its own accuracy matrix
or per-experience record contradicts, the same result twice; by rank, check and leaderboard alike
(submit: tests/board/test_submit.py), and `run` refuses a seed given twice."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.metrics.cl import cl_metrics
from clbench.metrics.registry import METRICS, metric
from clbench.results import load_result, load_results
from clbench.validation import check_value, recomputed

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "leaderboard" / "results"
DIGITS = COMMITTED / "split-digits" / "mlp"
#: the result every single-file test edits: it sorts last on split-digits (naive forgets most)
TARGET = "split-digits/mlp/naive/seed1.json"


@pytest.fixture()
def board(tmp_path: Path) -> Path:
    """naive and replay on split-digits, seeds 0-4: real files written by clbench run."""
    root = tmp_path / "results"
    for s in ("naive", "replay"):
        shutil.copytree(DIGITS / s, root / "split-digits" / "mlp" / s,
                        ignore=shutil.ignore_patterns("*.ckpt", "*.analysis*"))
    return root


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))   # json writes NaN / Infinity as the tokens Python reads


def _verb(verb: str, root: Path, tmp_path: Path) -> list[str]:
    if verb == "rank":
        return ["rank", str(root)]
    if verb == "check":
        return ["check", str(root), "--baseline", str(tmp_path / "baseline.json")]
    return ["leaderboard", str(root), "--out-dir", str(tmp_path / "board")]


def _refused(verb: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``verb`` on ``root``: one error line, exit 2, nothing written; returns the line."""
    assert main(_verb(verb, root, tmp_path)) == 2
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and cap.err.count("\n") == 1, cap.err
    assert cap.err.startswith("clbench: error: ") and "check: OK" not in cap.out, cap
    assert not (tmp_path / "board").exists()
    return cap.err


VERBS = ["rank", "check", "leaderboard"]


@pytest.fixture()
def baseline(board: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["check", str(board), "--write-baseline", str(path)]) == 0
    return path


def _value(name: str, v: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["metrics"][name].update(value=v)


def _flip(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["metrics"][name].update(higher_is_better=not d["metrics"][name]["higher_is_better"])


def _rematrix(d: dict[str, Any]) -> None:
    """A collapsed last experience, the matrix's metrics left as they were."""
    d["accuracy_matrix"][-1] = [0.0] * len(d["accuracy_matrix"][-1])


BAD = [
    # item 3: a direction that is not the registry's (the file that sorts last, the ranked metric
    # and one a check never compares)
    pytest.param(_flip("final_accuracy"), "'final_accuracy' is marked higher_is_better=false",
                 id="direction-ranked"),
    pytest.param(_flip("state_bytes"), "'state_bytes' is marked higher_is_better=true",
                 id="direction-other"),
    # item 5: out of range, not finite, not a number
    pytest.param(_value("final_accuracy", 5.0), "'final_accuracy' is 5, outside its range [0, 1]",
                 id="accuracy-5"),
    pytest.param(_value("final_accuracy", math.nan), "'final_accuracy' is nan, not finite",
                 id="accuracy-nan"),
    pytest.param(_value("bwt", -1.5), "'bwt' is -1.5, outside its range [-1, 1]", id="bwt"),
    pytest.param(_value("train_seconds", -3.0), "'train_seconds' is -3, outside its range [0, inf)",
                 id="seconds-negative"),
    pytest.param(_value("model_bytes", math.inf), "'model_bytes' is inf, not finite", id="bytes-inf"),
    pytest.param(_value("mono_csi", 1.5), "'mono_csi' is 1.5, outside its range [0, 1]",
                 id="unrecomputable-out-of-range"),
    pytest.param(_value("mono_ari", math.nan), "'mono_ari' is nan, not finite", id="unrecomputable-nan"),
    pytest.param(_value("final_accuracy", "high"), 'at $.metrics.final_accuracy.value: "high" is a string, should be number or null',
                 id="string"),
    pytest.param(lambda d: d["metrics"].update(my_score={"value": math.nan, "higher_is_better": True}),
                 "'my_score' is nan, not finite", id="unregistered-nan"),
    pytest.param(lambda d: d.update(random_init_accuracy=[0.2] * 3), "random_init_accuracy has 3",
                 id="b-short"),
    # issue 16: numbers the file's own records contradict
    pytest.param(_value("final_accuracy", 0.99), "'final_accuracy' is 0.99, but the file's own "
                 "accuracy matrix gives", id="inflated"),
    pytest.param(_rematrix, "but the file's own accuracy matrix gives 0;", id="matrix-edited"),
    pytest.param(_value("forgetting_max", None), "'forgetting_max' is null, but the file's own "
                 "accuracy matrix gives", id="dropped-to-null"),
    pytest.param(lambda d: d["metrics"].pop("final_accuracy"), "'final_accuracy' is missing",
                 id="metric-deleted"),
    pytest.param(_value("state_bytes", 1.0), "'state_bytes' is 1, but the file's own "
                 "per-experience record gives", id="state-bytes"),
    pytest.param(_value("eval_seconds", 0.001), "per-experience record gives", id="eval-seconds"),
    pytest.param(lambda d: [p.pop("state_bytes") for p in d["per_experience"]],
                 "'state_bytes' is reported, but the record it is computed from is missing",
                 id="record-removed"),
    pytest.param(lambda d: d["config"].update(seed="zero"), 'at $.config.seed: "zero" is a string, should be integer', id="seed-text"),
    pytest.param(lambda d: d["config"].update(seed=-1), "at $.config.seed: is -1, must be >= 0", id="seed-negative"),
]


@pytest.mark.parametrize("change, why", BAD)
@pytest.mark.parametrize("verb", VERBS)
def test_a_file_that_cannot_be_true_is_refused(verb: str, change: Callable[[dict[str, Any]], None],
                                               why: str, board: Path, baseline: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _edit(board / TARGET, change)
    err = _refused(verb, board, tmp_path, capsys)
    assert f"{board / TARGET}: " in err and why in err, err


def test_a_metric_the_matrix_leaves_undefined_must_be_null(tmp_path: Path) -> None:
    """joint trains once: its forgetting is undefined, so a number there is invented."""
    src = DIGITS / "joint" / "seed0.json"
    assert load_result(src)["metrics"]["forgetting_max"]["value"] is None
    path = tmp_path / "seed0.json"
    path.write_text(src.read_text())
    _edit(path, _value("forgetting_max", 0.0))
    with pytest.raises(ClbenchError, match="'forgetting_max' is 0, but the file's own accuracy "
                                           "matrix leaves it undefined"):
        load_result(path)


def test_a_text_run_s_perplexities_are_checked_against_its_record(tmp_path: Path) -> None:
    src = COMMITTED / "text-v1" / "smollm2-135m" / "naive" / "seed0.json"
    assert "general_ppl_ratio" in recomputed(load_result(src))
    path = tmp_path / "seed0.json"
    for change, why in [(_value("general_ppl_ratio", 1.0), "'general_ppl_ratio' is 1, but the "
                                                           "file's own general_ppl record gives"),
                        (lambda d: d.pop("general_ppl"), "'general_ppl_before' is reported, but "
                                                        "the record it is computed from is missing"),
                        (_value("general_ppl_after", 0.5), "outside its range [1, inf)")]:
        path.write_text(src.read_text())
        _edit(path, change)
        with pytest.raises(ClbenchError, match=re.escape(why)):
            load_result(path)


def test_a_consistent_collapse_is_not_refused(board: Path) -> None:
    """A matrix edited with its metrics recomputed is internally consistent: refusing it is
    the re-run's job (submit), not the loader's; the loader only refuses contradictions."""
    def collapse(d: dict[str, Any]) -> None:
        _rematrix(d)
        for k, v in cl_metrics(d["accuracy_matrix"], d["random_init_accuracy"]).items():
            d["metrics"][k]["value"] = None if math.isnan(v) else v
    _edit(board / TARGET, collapse)
    assert load_result(board / TARGET)["metrics"]["final_accuracy"]["value"] == 0.0


# --- item 4: one result per (stream, model, label, settings, seed) --------------------------------

def _copy_renamed(board: Path) -> tuple[Path, Path]:
    src = board / "split-digits" / "mlp" / "replay" / "seed0.json"
    dst = src.with_name("seed5.json")
    shutil.copy(src, dst)
    return src, dst


def _copy_elsewhere(board: Path) -> tuple[Path, Path]:
    src = board / "split-digits" / "mlp" / "replay" / "seed0.json"
    dst = board / "old" / "split-digits" / "mlp" / "replay" / "seed0.json"
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    return src, dst


def _symlink(board: Path) -> tuple[Path, Path]:
    src = board / "split-digits" / "mlp" / "replay" / "seed0.json"
    dst = board / "split-digits" / "mlp" / "replay" / "seed7.json"
    os.symlink(src, dst)
    return src, dst


@pytest.mark.parametrize("copy", [_copy_renamed, _copy_elsewhere, _symlink],
                         ids=["renamed", "other-folder", "symlink"])
@pytest.mark.parametrize("verb", VERBS)
def test_duplicates_are_refused_naming_both(verb: str, copy: Callable[[Path], tuple[Path, Path]],
                                            board: Path, baseline: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    a, b = copy(board)
    err = _refused(verb, board, tmp_path, capsys)
    assert str(a) in err and str(b) in err and "split-digits/mlp/replay seed 0" in err, err
    assert ("link to the other" in err) == (copy is _symlink), err


def test_other_settings_are_not_duplicates(board: Path) -> None:
    """The same seed with other training settings is another result."""
    src = board / "split-digits" / "mlp" / "replay" / "seed0.json"
    other = board / "split-digits" / "mlp" / "replay@other" / "seed0.json"
    other.parent.mkdir()
    shutil.copy(src, other)
    _edit(other, lambda d: d["config"]["train"].update(epochs=3))
    assert len(load_results(board)) == 2 * 5 + 1


@pytest.mark.parametrize("argv, why", [
    (["--seeds", "0,0"], "--seeds '0,0': seed 0 is given twice"),
    (["--seeds", "0,1,2,1"], "seed 1 is given twice"),
    (["--seeds", "0", "--strategy", "naive,naive"], "naive seed 0 is given twice"),
])
def test_run_refuses_a_cell_given_twice(argv: list[str], why: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--stream", "split-digits", "--strategy", "naive", "--results",
            str(tmp_path / "r"), "--quiet", "--threads", "1", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and err.count("\n") == 1 and why in err, err
    assert not (tmp_path / "r").exists(), "nothing ran"


def test_run_suite_with_a_seed_twice_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "twice.yaml"
    suite.write_text("name: twice\nversion: '1'\ndescription: one seed twice\n"
                     "streams: [split-digits]\nmodels: [mlp]\nstrategies: [naive]\nseeds: [0, 0]\n"
                     "overrides: ['epochs=1', 'mono.when=off']\n")
    assert main(["run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    assert "seed 0 is given twice" in capsys.readouterr().err


# --- the registry's ranges --------------------------------------------------------------------

@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_has_a_range_its_committed_values_lie_in(name: str) -> None:
    m = metric(name)
    assert math.nan not in m.range and math.inf not in m.range and -math.inf not in m.range
    values = [r["metrics"][name]["value"] for r in _committed() if name in r["metrics"]]
    assert all(v is None or v in m.range for v in values), (name, m.range)


def _committed() -> list[dict[str, Any]]:
    if not hasattr(_committed, "cache"):
        _committed.cache = load_results(COMMITTED) + load_results(ROOT / "leaderboard" / "ablation")  # type: ignore[attr-defined]
    return _committed.cache  # type: ignore[attr-defined]


def test_committed_results_agree_with_their_records() -> None:
    """Every committed result loads, and each recomputable metric was checked against it."""
    results = _committed()
    assert len(results) > 300
    checked = [n for r in results for n in recomputed(r) if r["status"] == "ok"]
    assert {"final_accuracy", "fwt", "state_bytes", "train_seconds", "general_ppl_ratio"} <= set(checked)


@pytest.mark.parametrize("value, ok", [(0.0, True), (1.0, True), (-1e-12, False), (1.0 + 1e-9, False),
                                       (True, False), (math.nan, False)])
def test_check_value_edges(value: Any, ok: bool) -> None:
    if ok:
        assert check_value("final_accuracy", value, "f") == value
    else:
        with pytest.raises(ClbenchError, match="^f: metric 'final_accuracy'"):
            check_value("final_accuracy", value, "f")
