"""rank and check take directions, headers and scales from the metric registry, not from files."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from clbench.board.check import (Cell, STORED, baseline_json, collect, compare, compare_cell,
                                 load_baseline)
from clbench.board.rank import SHOWN, rank_results, render, results_frame, stream_rows
from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.metrics.registry import METRICS, metric
from clbench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "leaderboard" / "results" / "split-digits" / "mlp"
STRATS = ("naive", "replay", "der")


@pytest.fixture(scope="module")
def committed() -> list[dict[str, Any]]:
    """Three committed strategies x three seeds on split-digits."""
    return [r for s in STRATS for r in load_results(DIGITS / s)]


@pytest.fixture()
def results(committed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(committed)


def _flip(results: list[dict[str, Any]], name: str) -> None:
    m = results[1]["metrics"][name]
    m["higher_is_better"] = not m["higher_is_better"]


def _one_line(e: pytest.ExceptionInfo[ClbenchError]) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


def _copy_tree(tmp_path: Path, results: list[dict[str, Any]]) -> Path:
    """Write ``results`` as a results folder (one file per strategy and seed)."""
    root = tmp_path / "results"
    for r in results:
        c = r["config"]
        p = root / c["stream"] / c["model"] / r["label"] / f"seed{c['seed']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
    return root


# --- rank -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["final_accuracy", "forgetting_max", "state_bytes", "mono_csi",
                                  "mono_davies_bouldin"])
def test_rank_direction_is_the_registry_s(results: list[dict[str, Any]], name: str) -> None:
    t = rank_results(results, name)
    assert t.higher_is_better is metric(name).higher_is_better
    table = t.per_stream["split-digits"]
    means = table[(name, "mean")].tolist()
    assert means == sorted(means, reverse=metric(name).higher_is_better)
    assert f"Ranked on `{name}` ({metric(name).arrow})" in render(t, "md")


def test_rank_headers_and_scales_are_the_registry_s(results: list[dict[str, Any]]) -> None:
    """A metric outside SHOWN comes first, under its registry header, times its scale."""
    t = rank_results(results, "mono_sparse_probe_k1")
    headers, rows = stream_rows(t, "split-digits")
    m = metric("mono_sparse_probe_k1")
    # split-digits is class-incremental with one head: FWT is not applicable there; no image
    # run has a general-ability perplexity (text streams only)
    assert headers[3] == m.header
    assert headers[4:-1] == [metric(c).header for c in SHOWN if c not in ("fwt", "general_ppl_ratio")]
    shown = float(rows[0][3].split(" ± ")[0])
    mean = t.per_stream["split-digits"][(m.name, "mean")].iloc[0]
    assert shown == pytest.approx(m.display(mean), abs=0.05) and m.scale == 100.0


def test_rank_refuses_a_file_whose_flag_disagrees(results: list[dict[str, Any]]) -> None:
    _flip(results, "forgetting_max")
    with pytest.raises(ClbenchError) as e:
        rank_results(results, "final_accuracy")
    msg = _one_line(e)
    assert "split-digits/mlp/naive seed 1" in msg and "'forgetting_max'" in msg
    assert "lower is better" in msg


@pytest.mark.parametrize("asked, hint", [
    ("final_acc", "did you mean 'final_accuracy'"),
    ("forgeting_max", "did you mean 'forgetting_max'"),
    ("zzz", "known: avg_incremental_accuracy, bwt, "),
])
def test_rank_refuses_unregistered_metrics(results: list[dict[str, Any]], asked: str,
                                           hint: str) -> None:
    with pytest.raises(ClbenchError) as e:
        rank_results(results, asked)
    msg = _one_line(e)
    assert msg.startswith(f"unknown metric {asked!r}") and hint in msg


def test_rank_refuses_a_registered_metric_no_result_reports(results: list[dict[str, Any]]) -> None:
    with pytest.raises(ClbenchError) as e:
        rank_results(results, "ff_crosscoder_fvu")
    assert "no successful result reports metric 'ff_crosscoder_fvu'" in _one_line(e)


def test_unregistered_metrics_in_files_are_left_out(results: list[dict[str, Any]]) -> None:
    """An outside method's extra metric (with either flag) never reaches a table or the CSV."""
    plain = rank_results(copy.deepcopy(results), "final_accuracy")
    for i, r in enumerate(results):
        r["metrics"]["my_extra_score"] = {"value": float(i), "higher_is_better": i % 2 == 0}
    df, direction = results_frame(results)
    assert "my_extra_score" not in df.columns and "my_extra_score" not in direction
    t = rank_results(results, "final_accuracy")
    for fmt in ("md", "csv"):
        text = render(t, fmt)
        assert "my_extra_score" not in text and text == render(plain, fmt)
    with pytest.raises(ClbenchError, match="unknown metric 'my_extra_score'"):
        rank_results(results, "my_extra_score")


def test_direction_map_follows_the_files_order(results: list[dict[str, Any]]) -> None:
    """Column order (and so the CSV's) is the order metrics first appear in the files."""
    _, direction = results_frame(results)
    assert list(direction) == [n for n in results[0]["metrics"] if n in METRICS]
    assert all(direction[n] is metric(n).higher_is_better for n in direction)


def test_rank_verb_user_errors(results: list[dict[str, Any]], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_tree(tmp_path, results)
    assert main(["rank", str(root), "--metric", "forgetting_max"]) == 0
    assert "Ranked on `forgetting_max` (lower is better)" in capsys.readouterr().out
    assert main(["rank", str(root), "--metric", "forgeting_max"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'forgetting_max'" in err
    _flip(results, "bwt")
    root = _copy_tree(tmp_path / "flipped", results)
    assert main(["rank", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and err.count("\n") == 1 and "'bwt'" in err


# --- check ------------------------------------------------------------------------------------

def test_check_refuses_a_result_whose_flag_disagrees(results: list[dict[str, Any]]) -> None:
    _flip(results, "final_accuracy")
    with pytest.raises(ClbenchError) as e:
        collect(results)
    assert "'final_accuracy'" in _one_line(e) and "higher is better" in str(e.value)


def test_check_ignores_unstored_and_unregistered_metrics(results: list[dict[str, Any]]) -> None:
    plain = collect(copy.deepcopy(results))
    for r in results:
        r["metrics"]["my_extra_score"] = {"value": 1.0, "higher_is_better": False}
    cells = collect(results)
    assert {k: c.values for k, c in cells.items()} == {k: c.values for k, c in plain.items()}
    assert all(set(c.values) <= set(STORED) for c in cells.values())


def test_baseline_records_the_registry_s_directions(results: list[dict[str, Any]]) -> None:
    data = baseline_json(collect(results), "results")
    for cell in data["cells"]:
        for name, m in cell["metrics"].items():
            assert m["higher_is_better"] is metric(name).higher_is_better


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m["forgetting_max"].update(higher_is_better=True), "'forgetting_max'"),
    (lambda m: m.update(final_acc=m.pop("final_accuracy")), "did you mean 'final_accuracy'"),
])
def test_load_baseline_refuses_a_disagreeing_or_unknown_metric(tmp_path: Path, edit: Any,
                                                              fragment: str) -> None:
    src = ROOT / "leaderboard" / "baselines" / "quick.json"
    data = json.loads(src.read_text())
    edit(data["cells"][0]["metrics"])
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ClbenchError) as e:
        load_baseline(path)
    msg = _one_line(e)
    assert msg.startswith(f"{path}: cell ") and fragment in msg


def test_check_verdict_uses_the_registry_direction() -> None:
    """Forgetting going up is a DROP, accuracy going up a JUMP: no flag is stored in a Cell."""
    def cell(vals: dict[str, float]) -> Cell:
        c = Cell("s", "mlp", "x")
        c.values = {name: {seed: v for seed in range(3)} for name, v in vals.items()}
        return c

    base = cell({"final_accuracy": 0.5, "forgetting_max": 0.1})
    now = cell({"final_accuracy": 0.9, "forgetting_max": 0.5})
    assert compare_cell(base, now, "final_accuracy").status == "JUMP"
    assert compare_cell(base, now, "forgetting_max").status == "DROP"
    assert compare_cell(now, base, "forgetting_max").status == "JUMP"
    assert not math.isnan(compare_cell(base, now, "forgetting_max").tol)


@pytest.mark.parametrize("asked, fragment", [
    ("forgeting_max", "unknown metric 'forgeting_max'; did you mean 'forgetting_max'"),
    ("mono_csi", "--metric 'mono_csi': a baseline stores only final_accuracy"),
])
def test_check_metric_choice(asked: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment):
        compare({}, {}, (asked,))


def test_committed_results_agree_with_the_registry() -> None:
    """Every committed result (leaderboard, ablations, reproductions) carries only registered
    metrics, with the registry's flags: rank and check would refuse them otherwise."""
    results = load_results(ROOT / "leaderboard")
    assert len(results) > 200 and any("ff_crosscoder_fvu" in r["metrics"] for r in results)
    for r in results:
        for name, m in r["metrics"].items():
            assert name in METRICS and m["higher_is_better"] is metric(name).higher_is_better
