"""Issue 16's leaderboard rules: reference rows apart, a CI rank that uncertainty never helps,
and tables that never mix what cannot be compared. Real result files from the committed
leaderboard, the real ranking code and the real CLI."""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clbench.board.leaderboard import build_leaderboard, means_matrix
from clbench.board.rank import REFERENCE, TASK_IL, rank_results, render, stream_rows
from clbench.board.stats import ci_rank, friedman_nemenyi
from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "leaderboard" / "results"
STREAMS = ("split-digits", "split-mnist1d")
METHODS = ("naive", "replay", "der", "joint", "cumulative")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five strategies (two of them upper bounds) on two streams, copied from the leaderboard."""
    root = tmp_path_factory.mktemp("results")
    for stream in STREAMS:
        for s in METHODS:
            shutil.copytree(RESULTS / stream / "mlp" / s, root / stream / "mlp" / s)
    return root


def _relabel(results: list[dict[str, Any]], strategy: str, as_strategy: str) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if r["config"]["strategy"] == strategy:
            r = copy.deepcopy(r)
            r["config"]["strategy"] = r["label"] = as_strategy
            out.append(r)
    return out


# -- upper bounds are shown apart ----------------------------------------------------------------

def test_reference_rows_are_unranked_below_and_out_of_the_test(folder: Path) -> None:
    tables = rank_results(load_results(folder))
    assert tables.reference == set(REFERENCE)
    for stream in STREAMS:
        t = tables.per_stream[stream]
        assert list(t.index[-2:]) == ["cumulative", "joint"] or set(t.index[-2:]) == set(REFERENCE)
        assert t.loc[list(REFERENCE), ("rank", "")].isna().all()
        assert t.loc[list(REFERENCE), ("ci_rank", "")].isna().all()
        ranked = t[~t[("reference", "")]]
        assert sorted(ranked[("rank", "")].tolist()) == [1.0, 2.0, 3.0]   # ranked among themselves
        headers, rows = stream_rows(tables, stream)
        shown = {r[1]: r for r in rows}
        assert shown["joint (reference)"][0] == "-" and shown["joint (reference)"][2] == "-"
    assert set(tables.overall.index) == {"naive", "replay", "der"}
    assert set(means_matrix(tables).index) == {"naive", "replay", "der"}
    test = friedman_nemenyi(means_matrix(tables))
    assert test.k == 3 and not set(test.mean_ranks.index) & REFERENCE
    assert "Reference rows (cumulative, joint" in render(tables, "md")


def test_include_reference_ranks_them(folder: Path) -> None:
    tables = rank_results(load_results(folder), include_reference=True)
    assert not tables.reference
    assert set(tables.overall.index) == set(METHODS)
    assert friedman_nemenyi(means_matrix(tables)).k == 5


def test_a_combined_strategy_containing_an_upper_bound_is_ranked(folder: Path) -> None:
    results = load_results(folder)
    combo = _relabel(results, "cumulative", "replay+cumulative")
    tables = rank_results(results + combo)
    assert "replay+cumulative" not in tables.reference
    assert "replay+cumulative" in tables.overall.index
    assert tables.per_stream["split-digits"].loc["replay+cumulative", ("rank", "")] == 1.0


def test_leaderboard_and_rank_verbs_take_include_reference(folder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    build_leaderboard(folder, tmp_path / "apart", name="mini")
    readme = (tmp_path / "apart" / "README.md").read_text()
    assert "Left out of the test (reference rows, upper bounds): cumulative, joint." in readme
    assert "k = 3 strategies" in readme and "joint (reference)" in readme
    assert "joint (reference)" in (tmp_path / "apart" / "index.html").read_text()
    assert main(["leaderboard", str(folder), "--name", "mini", "--out-dir", str(tmp_path / "all"),
                 "--include-reference"]) == 0
    readme = (tmp_path / "all" / "README.md").read_text()
    assert "k = 5 strategies" in readme and "(reference)" not in readme
    assert "--include-reference" in readme
    capsys.readouterr()
    assert main(["rank", str(folder)]) == 0
    assert "| -      | joint (reference)" in capsys.readouterr().out
    assert main(["rank", str(folder), "--include-reference"]) == 0
    assert "(reference)" not in capsys.readouterr().out


# -- CI rank reads right ---------------------------------------------------------------------------

def test_committed_results_ci_rank_is_never_better_than_the_rank() -> None:
    """The defect as seen (perm-fmnist: si rank 6, CI rank 4 with the widest interval near it):
    on the committed results no CI rank is better than the point rank."""
    tables = rank_results(load_results(RESULTS))
    for stream, t in tables.per_stream.items():
        ranked = t[t[("rank", "")].notna()]
        bad = ranked[ranked[("ci_rank", "")] < ranked[("rank", "")]]
        assert bad.empty, (stream, bad[[("rank", ""), ("ci_rank", "")]])


@pytest.mark.parametrize("hib", [True, False])
def test_ci_rank_nested_intervals_the_wider_is_not_better(hib: bool) -> None:
    sign = 1.0 if hib else -1.0
    # a's wide interval [.81, .91] holds b's narrow one [.84, .86]; c [.60, .62] is below both
    mean = pd.Series({"a": 0.86, "b": 0.85, "c": 0.61}) * sign
    half = pd.Series({"a": 0.05, "b": 0.01, "c": 0.01})
    r = ci_rank(mean, half, hib)
    assert r.tolist() == [2.0, 2.0, 3.0]
    # a [.859, .861] and b [.845, .855] apart: the better mean takes 1 once it is shown to be better
    narrower = ci_rank(mean, pd.Series({"a": 0.001, "b": 0.005, "c": 0.01}), hib)
    assert narrower.tolist() == [1.0, 2.0, 3.0] and (narrower <= r).all()


def test_ci_rank_one_seed_has_no_interval() -> None:
    """A one-seed row (nan half-width) is unbounded: it may be anywhere, so it gets the last CI
    rank and counts as possibly better than every other row; a zero width would have put it 1st."""
    mean = pd.Series({"a": 0.95, "b": 0.80, "c": 0.50})
    half = pd.Series({"a": math.nan, "b": 0.01, "c": 0.01})
    assert ci_rank(mean, half, True).tolist() == [3.0, 2.0, 3.0]


def test_ci_rank_equal_means_share_it_and_nan_means_have_none() -> None:
    mean = pd.Series({"a": 0.9, "b": 0.7, "c": 0.7, "d": 0.2, "e": math.nan})
    half = pd.Series({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.1})
    r = ci_rank(mean, half, True)
    assert r[["a", "b", "c", "d"]].tolist() == [1.0, 3.0, 3.0, 4.0] and math.isnan(r["e"])


def test_ci_rank_more_uncertainty_never_helps() -> None:
    """Widening any one interval never lowers (improves) any CI rank (random cases)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 7))
        mean = pd.Series(rng.normal(size=n).round(1))
        half = pd.Series(rng.uniform(0, 1, size=n).round(1))
        hib = bool(rng.integers(2))
        before = ci_rank(mean, half, hib)
        wider = half.copy()
        wider[int(rng.integers(n))] += float(rng.uniform(0, 1))
        assert (ci_rank(mean, wider, hib) >= before).all()
        one_seed = half.copy()
        one_seed[int(rng.integers(n))] = math.nan
        assert (ci_rank(mean, one_seed, hib) >= before).all()


def test_ties_share_the_average_rank_in_stream_and_overall_tables(folder: Path) -> None:
    results = load_results(folder)
    twin = _relabel(results, "naive", "naive-twin")       # the same numbers under another name
    tables = rank_results(results + twin)
    for stream in STREAMS:
        t = tables.per_stream[stream]
        assert t.loc["naive", ("rank", "")] == t.loc["naive-twin", ("rank", "")]
        assert t.loc["naive", ("rank", "")] % 1 == 0.5
        ranked = t[~t[("reference", "")]][("rank", "")]
        assert ranked.to_dict() == tables.overall[stream].dropna().to_dict()


# -- rank refuses to mix what cannot be compared ------------------------------------------------------

def test_task_il_runs_of_a_stream_get_their_own_table(folder: Path) -> None:
    results = load_results(folder)
    til = [copy.deepcopy(r) for r in results if r["config"]["stream"] == "split-digits"
           and r["config"]["strategy"] == "naive"]
    for r in til:
        r["config"]["task_incremental"] = True
    tables = rank_results(results + til)
    assert set(tables.per_stream) == {*STREAMS, "split-digits" + TASK_IL}
    assert list(tables.per_stream["split-digits" + TASK_IL].index) == ["naive"]
    assert tables.per_stream["split-digits"].loc["naive", ("seeds", "n")] == 5
    assert "### split-digits (task-IL)" in render(tables, "md")


def test_different_stream_versions_are_refused(folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    results = load_results(folder)
    for r in results:
        if r["config"]["strategy"] == "der" and r["config"]["stream"] == "split-digits":
            r["stream"]["version"] = "9.0"
    with pytest.raises(ClbenchError, match="versions"):
        rank_results(results)
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    for f in (mixed / "split-digits" / "mlp" / "der").glob("*.json"):
        data = json.loads(f.read_text())
        data["stream"]["version"] = "9.0"
        f.write_text(json.dumps(data))
    assert main(["rank", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and err.count("\n") == 1 and "split-digits" in err
