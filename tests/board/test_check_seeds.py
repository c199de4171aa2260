"""`clbench check` seed by seed: one collapsed seed fails the check even where the mean test
cannot see it; options and baseline values that no run can have are refused."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from clbench.board.check import Cell, compare_seeds
from clbench.cli import main
from clbench.metrics.cl import cl_metrics

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "leaderboard" / "results" / "split-digits" / "mlp"


@pytest.fixture()
def board(tmp_path: Path) -> Path:
    """naive and replay on split-digits, seeds 0-4: real files written by clbench run."""
    root = tmp_path / "results"
    for s in ("naive", "replay"):
        shutil.copytree(DIGITS / s, root / "split-digits" / "mlp" / s)
    return root


@pytest.fixture()
def baseline(board: Path, tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["check", str(board), "--write-baseline", str(path)]) == 0
    return path


def _set_last_row(path: Path, row: Callable[[list[float]], list[float]]) -> None:
    """Replace the matrix's last row, metrics recomputed: what a real collapsed (or suddenly
    better) run writes, consistent with its own matrix."""
    d = json.loads(path.read_text())
    d["accuracy_matrix"][-1] = row(d["accuracy_matrix"][-1])
    for k, v in cl_metrics(d["accuracy_matrix"], d["random_init_accuracy"]).items():
        d["metrics"][k]["value"] = None if math.isnan(v) else v
    path.write_text(json.dumps(d))


def _check(board: Path, baseline: Path, capsys: pytest.CaptureFixture[str], *extra: str
           ) -> tuple[int, list[list[str]], str]:
    rc = main(["check", str(board), "--baseline", str(baseline), *extra])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|") and not line.startswith("|--")]
    return rc, rows[1:], out.strip().splitlines()[-1]


def test_identical_results_pass_with_no_seed_lines(board: Path, baseline: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc, rows, last = _check(board, baseline, capsys)
    assert rc == 0 and last == "check: OK (2 ok)" and [r[0] for r in rows] == ["ok", "ok"]


def test_one_collapsed_seed_fails_the_check(board: Path, baseline: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 7: replay's seed 2 at 0% moves the mean of five seeds from 0.94 to 0.75,
    and the results' spread widens the mean test's tolerance past that: only the seed line
    catches it."""
    _set_last_row(board / "split-digits" / "mlp" / "replay" / "seed2.json", lambda r: [0.0] * len(r))
    rc, rows, last = _check(board, baseline, capsys)
    assert rc == 1 and last.startswith("check: FAIL"), rows
    seed_rows = [r for r in rows if r[0].startswith("SEED")]
    assert [(r[0], r[3], r[9]) for r in seed_rows] == [("SEED DROP", "replay", "seed 2")], rows
    assert seed_rows[0][5].endswith("(seed 2)") and seed_rows[0][6] == "0.0000 (seed 2)"
    mean = next(r for r in rows if r[3] == "replay" and not r[0].startswith("SEED"))
    assert mean[0] == "ok" and float(mean[8]) > abs(float(mean[7])) > 0.15, mean  # the mean test alone


def test_one_seed_far_better_is_a_seed_jump(board: Path, baseline: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _set_last_row(board / "split-digits" / "mlp" / "naive" / "seed1.json", lambda r: [0.9] * len(r))
    rc, rows, _ = _check(board, baseline, capsys)
    assert rc == 1 and ("SEED JUMP", "naive", "seed 1") in [(r[0], r[3], r[9]) for r in rows], rows


def test_results_sharing_no_seed_get_the_mean_test_and_say_so(
        board: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for p in board.rglob("seed*.json"):
        d = json.loads(p.read_text())
        d["config"]["seed"] += 10
        p.unlink()
        (p.parent / f"seed{d['config']['seed']}.json").write_text(json.dumps(d))
    rc, rows, last = _check(board, baseline, capsys)
    assert rc == 0 and last == "check: OK (2 ok)", rows
    assert all("unpaired: no seed in common with the baseline" in r[9] for r in rows), rows


def test_a_baseline_seed_without_results_is_named(board: Path, baseline: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (board / "split-digits" / "mlp" / "replay" / "seed2.json").unlink()
    rc, rows, _ = _check(board, baseline, capsys)
    replay = next(r for r in rows if r[3] == "replay")
    assert rc == 0 and "baseline seeds without results: 2" in replay[9], rows


def test_seed_tolerance_formula() -> None:
    """tol_seed = max(floor, z sqrt(2) s_b), s_b from the baseline only."""
    b = Cell("s", "m", "x", values={"final_accuracy": {0: 0.50, 1: 0.52, 2: 0.54}})
    r = Cell("s", "m", "x", values={"final_accuracy": {0: 0.50, 1: 0.52, 2: 0.54 - 0.15}})
    [row] = compare_seeds(b, r, "final_accuracy", z=5.0, floor=0.03)
    assert row.status == "SEED DROP" and row.seed == 2
    assert row.tol == pytest.approx(5 * math.sqrt(2) * 0.02)
    assert compare_seeds(b, r, "final_accuracy", z=5.0, floor=0.2) == []


# --- item 8: options and baseline values ------------------------------------------------------

@pytest.mark.parametrize("option, value, why", [
    ("--floor", "nan", "--floor nan: must be a finite number >= 0"),
    ("--floor", "-0.1", "--floor -0.1: must be a finite number >= 0"),
    ("--floor", "inf", "--floor inf: must be a finite number >= 0"),
    ("--z", "nan", "--z nan: must be a finite number > 0"),
    ("--z", "0", "--z 0: must be a finite number > 0"),
    ("--z", "inf", "--z inf: must be a finite number > 0"),
])
def test_bad_numeric_options_are_refused(option: str, value: str, why: str, board: Path,
                                         baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _set_last_row(board / "split-digits" / "mlp" / "replay" / "seed2.json", lambda r: [0.0] * len(r))
    assert main(["check", str(board), "--baseline", str(baseline), option, value]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("clbench: error: ") and cap.err.count("\n") == 1, cap.err
    assert why in cap.err and "check: OK" not in cap.out


def _metric_value(v: Any) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        d["cells"][1]["metrics"]["final_accuracy"]["values"]["1"] = v
    return f


def _cell(key: str, v: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["cells"][1].update({key: v})


@pytest.mark.parametrize("edit, why", [
    (_metric_value(math.nan), "'final_accuracy' is nan, not finite"),
    (_metric_value(math.inf), "'final_accuracy' is inf, not finite"),
    (_metric_value(5.0), "'final_accuracy' is 5, outside its range [0, 1]"),
    (_metric_value("high"), "'final_accuracy' has value 'high', not a number"),
    (_cell("failed", -1), "'failed' is -1, not a count of runs"),
    (_cell("failed", "x"), "'failed' is 'x', not a count of runs"),
    (_cell("fingerprints", {"-1": "ab"}), "seed -1 is negative"),
    (_cell("fingerprints", {"zero": "ab"}), "malformed baseline"),
    (_cell("fingerprints", {"0": 5}), "fingerprints must be strings"),
    # item 3: a baseline's direction is the registry's, never its own
    (lambda d: d["cells"][1]["metrics"]["final_accuracy"].update(higher_is_better=False),
     "'final_accuracy' is marked higher_is_better=false, but it is higher is better"),
])
def test_baseline_values_no_run_can_have_are_refused(edit: Callable[[dict[str, Any]], None],
                                                     why: str, board: Path, baseline: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    d = json.loads(baseline.read_text())
    edit(d)
    baseline.write_text(json.dumps(d))
    assert main(["check", str(board), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"clbench: error: {baseline}: ") and err.count("\n") == 1, err
    assert why in err and "--write-baseline" in err, err


def test_a_baseline_nested_too_deep_is_one_line(board: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 11: 200k-deep JSON as a baseline (json's recursion limit) is one line."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert main(["check", str(board), "--baseline", str(deep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"clbench: error: {deep}: JSON nested too deeply") and err.count("\n") == 1, err
