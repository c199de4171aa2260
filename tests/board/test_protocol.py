"""Issue 16 items 2-3: a board's page states the protocol its result files record, and the
time plot's points carry their spread over seeds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clbench.board.leaderboard import build_leaderboard, pareto_panels, time_spread
from clbench.board.rank import rank_results
from clbench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "leaderboard" / "results"
STRATEGIES = ("naive", "ewc", "replay", "joint")


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small board: committed split-digits and split-mnist1d results of four
    strategies, their clbench version changed to one no code writes (so the page can only have
    read it from the files)."""
    root = tmp_path_factory.mktemp("protocol")
    for stream in ("split-digits", "split-mnist1d"):
        for s in STRATEGIES:
            shutil.copytree(RESULTS / stream / "mlp" / s, root / "results" / stream / "mlp" / s)
    for p in (root / "results").rglob("seed*.json"):
        data = json.loads(p.read_text())
        data["provenance"]["clbench_version"] = "9.8.7-from-the-files"
        p.write_text(json.dumps(data))
    build_leaderboard(root / "results", root / "out", name="mini")
    return root


@pytest.mark.parametrize("page", ["README.md", "index.html"])
def test_the_page_states_its_protocol(board: Path, page: str) -> None:
    text = (board / "out" / page).read_text().replace("&#x27;", "'")
    results = load_results(board / "results")
    r = next(x for x in results if x["config"]["stream"] == "split-mnist1d"
             and x["config"]["strategy"] == "ewc" and x["config"]["seed"] == 1)
    train = r["config"]["train"]
    for shown in ("Protocol (read from the result files)", "mlp", "hidden=[400, 400]",
                  "class-il", str(train["epochs"]), str(train["batch_size"]), train["optimizer"],
                  str(train["lr"]), str(r["stream"]["version"]),
                  f"1: {r['stream']['fingerprint'][:12]}",            # a fingerprint per seed
                  "clbench 9.8.7-from-the-files",
                  "registry default: ewc_lambda=100.0",               # a setting and its source
                  "Elastic Weight Consolidation, one Fisher per experience (Kirkpatrick et al. 2017)",
                  "registry default: mem_size=200",
                  "under whatever load its machine had", "torch thread(s) per run",
                  "min to max over seeds"):
        assert shown in text, shown


def test_a_setting_not_the_registrys_is_marked_an_override(board: Path, tmp_path: Path) -> None:
    shutil.copytree(board / "results", tmp_path / "results")
    for p in (tmp_path / "results" / "split-digits" / "mlp" / "ewc").glob("seed*.json"):
        data = json.loads(p.read_text())
        data["config"]["strategy_params"]["ewc"]["ewc_lambda"] = 7.5
        p.write_text(json.dumps(data))
    build_leaderboard(tmp_path / "results", tmp_path / "out", name="mini")
    assert "override: ewc_lambda=7.5" in (tmp_path / "out" / "README.md").read_text()


def test_time_points_carry_their_spread_over_seeds(board: Path) -> None:
    """The plotted points of the time view: x is the mean of train + eval seconds over seeds,
    and each carries the least and the most of one seed's, as the files record them."""
    results = load_results(board / "results")
    tables = rank_results(results)
    [digits, mnist1d] = pareto_panels(tables, "time", results)
    assert (digits.title, mnist1d.title) == ("split-digits", "split-mnist1d")
    for panel in (digits, mnist1d):
        assert panel.cost_lo is not None and panel.cost_hi is not None
        for label, x, lo, hi in zip(panel.labels, panel.cost, panel.cost_lo, panel.cost_hi):
            secs = [r["metrics"]["train_seconds"]["value"] + r["metrics"]["eval_seconds"]["value"]
                    for r in results if r["config"]["stream"] == panel.title
                    and r.get("label", r["config"]["strategy"]) == label]
            assert len(secs) >= 2
            assert (lo, hi) == (min(secs), max(secs)) and lo < hi
            assert x == pytest.approx(sum(secs) / len(secs))
    assert set(time_spread(results)) == {(s, x) for s in ("split-digits", "split-mnist1d")
                                         for x in STRATEGIES}
    [state, _] = pareto_panels(tables, "state", results)
    assert state.cost_lo is None, "only the time view carries bars"
