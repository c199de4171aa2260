"""`clbench check`: seed noise passes, a planted regression (a real broken strategy) fails."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from avalanche.training.plugins import ReplayPlugin

from clbench.board.check import collect, compare, load_baseline, tolerance
from clbench.cli import main
from clbench.registry import Entry
from clbench.results import load_results
from clbench.strategy_api import STRATEGIES, BuildContext
from clbench.suites import Cell, load_suite
from clbench.run.sweep import run_cells

ROOT = Path(__file__).resolve().parents[2]
#: a real sweep kept short: split-digits, 2 epochs, no monosemanticity block
OVERRIDES = ["epochs=2", "mono.when=off"]
STRATS = ("naive", "replay")


def _sweep(root: Path, seeds: tuple[int, ...], strategies: tuple[str, ...] = STRATS) -> Path:
    run_cells([Cell("split-digits", "mlp", s, seed) for seed in seeds for s in strategies],
              root, OVERRIDES, show_progress=False)
    return root


class BufferNeverFilled(ReplayPlugin):
    """A plausible bug: replay whose buffer update was lost, so it trains like naive."""

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """good: seeds 0-2 (the baseline's runs); noise: seeds 3-5; broken: replay with the bug
    registered under the name 'replay', seeds 0-2, so its results land in the baseline's cells."""
    base = tmp_path_factory.mktemp("check")
    good = _sweep(base / "good", (0, 1, 2))
    noise = _sweep(base / "noise", (3, 4, 5))
    broken = base / "broken"
    shutil.copytree(good / "split-digits" / "mlp", broken / "split-digits" / "mlp",
                    ignore=shutil.ignore_patterns("replay*"))
    spec = STRATEGIES.get("replay").obj

    def build(p: dict[str, Any], ctx: BuildContext) -> ReplayPlugin:
        return BufferNeverFilled(mem_size=p["mem_size"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(STRATEGIES._entries, "replay",
                   Entry("replay", dataclasses.replace(spec, build=build), "broken replay"))
        _sweep(broken, (0, 1, 2), ("replay",))
    return {"good": good, "noise": noise, "broken": broken, "base": base}


def _check(results: Path, baseline: Path, capsys: pytest.CaptureFixture[str],
           *extra: str) -> tuple[int, str]:
    rc = main(["check", str(results), "--baseline", str(baseline), *extra])
    return rc, capsys.readouterr().out


def _status(out: str, strategy: str, metric: str = "final_accuracy") -> str:
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 4 and cells[3].startswith(strategy + "@") and cells[4] == metric:
            return cells[0]
    raise AssertionError(f"no row for {strategy}/{metric} in\n{out}")


@pytest.fixture(scope="module")
def baseline(runs: dict[str, Path]) -> Path:
    path = runs["base"] / "baseline.json"
    assert main(["check", str(runs["good"]), "--write-baseline", str(path)]) == 0
    return path


def test_seed_noise_passes(runs: dict[str, Path], baseline: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _check(runs["noise"], baseline, capsys, "--metric", "final_accuracy,forgetting_max")
    assert rc == 0, out
    assert out.strip().splitlines()[-1] == "check: OK (4 ok)"
    # the seeds really differ: the means moved, just not beyond the tolerance
    rows = compare(load_baseline(baseline), collect(load_results(runs["noise"])))
    assert all(abs(r.diff) > 0 for r in rows) and all(abs(r.diff) <= r.tol for r in rows)


def test_planted_regression_fails(runs: dict[str, Path], baseline: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _check(runs["broken"], baseline, capsys)
    assert rc == 1, out
    assert _status(out, "replay") == "DROP" and _status(out, "naive") == "ok"
    assert out.strip().splitlines()[-1].startswith("check: FAIL")


def test_suspicious_jump_fails(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Two-sided: with the broken runs as the baseline, the good ones are a suspicious jump."""
    path = runs["base"] / "broken-baseline.json"
    assert main(["check", str(runs["broken"]), "--write-baseline", str(path)]) == 0
    capsys.readouterr()
    rc, out = _check(runs["good"], path, capsys)
    assert rc == 1 and _status(out, "replay") == "JUMP", out


def test_missing_cells_are_reported_not_failed(runs: dict[str, Path], baseline: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(runs["good"], partial, ignore=shutil.ignore_patterns("naive*"))
    rc, out = _check(partial, baseline, capsys)
    assert rc == 0 and _status(out, "naive") == "missing" and _status(out, "replay") == "ok", out


def test_changed_stream_data_fails(runs: dict[str, Path], baseline: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(runs["good"], changed)
    f = next(changed.rglob("naive*/seed1.json"))
    data = json.loads(f.read_text())
    data["stream"]["fingerprint"] = "0" * 64
    f.write_text(json.dumps(data))
    rc, out = _check(changed, baseline, capsys)
    assert rc == 1 and _status(out, "naive") == "STREAM CHANGED", out


@pytest.mark.parametrize("content, why", [(None, "no such baseline"), ("{", "not valid JSON"),
                                          ('{"schema": "x"}', "not a clbench.baseline/1")])
def test_bad_baseline_is_a_user_error(runs: dict[str, Path], tmp_path: Path, content: str | None,
                                      why: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    assert main(["check", str(runs["good"]), "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and err.count("\n") == 1 and why in err, err


def test_tolerance_formula() -> None:
    assert tolerance(0.0, 3, 0.0, 3) == 0.03  # the floor
    assert tolerance(0.06, 3, 0.03, 2, z=5, floor=0.0) == pytest.approx(5 * (0.0012 + 0.00045) ** 0.5)


def test_committed_quick_baseline_covers_the_quick_suite() -> None:
    """leaderboard/baselines/quick.json (what .ci/run checks against) has every quick-suite cell."""
    suite = load_suite("quick")
    cells = load_baseline(ROOT / "leaderboard" / "baselines" / "quick.json")
    assert set(cells) == {(st, m, s) for st in suite.streams for m in suite.models
                          for s in suite.strategies}
    for c in cells.values():
        assert sorted(c.values["final_accuracy"]) == suite.seeds and c.failed == 0
