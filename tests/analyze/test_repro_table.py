"""ci/repro_feature_forgetting.py: mean ± 95% t-interval over seeds, the null model's row beside
each run's, the runs' flags, and the mark on analyses made before the held-out rows."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import repro_feature_forgetting as repro  # noqa: E402


def result(seed: int, halved: float, null_halved: float | None = 0.0,
           flags: list[str] | None = None, strategy: str = "naive",
           heldout: bool = True) -> dict[str, Any]:
    summary = {c: 0.5 for c in repro.COLUMNS}
    summary["ff_frac_first_exp_capacity_halved"] = halved
    if not heldout:
        del summary["ff_crosscoder_fvu_heldout"]
    r: dict[str, Any] = {
        "status": "ok", "label": strategy,
        "config": {"stream": "split-digits", "strategy": strategy, "model": "mlp", "seed": seed,
                   "strategy_params": {strategy: {}}},
        "metrics": {"final_accuracy": {"value": 0.2 + 0.1 * seed},
                    "forgetting_max": {"value": 0.9}},
        "feature_forgetting": {"summary": summary},
    }
    if null_halved is not None:
        r["feature_forgetting_null"] = {"summary": {**summary,
                                                    "ff_frac_first_exp_capacity_halved":
                                                    null_halved}}
    if flags is not None:
        r["flags"] = flags
    return r


def cells(text: str, strategy: str) -> tuple[list[str], list[str]]:
    """The run row of ``strategy`` and the row after it, as cells."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if f"| {strategy}" in line)

    def split(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    return split(lines[i]), split(lines[i + 1] if i + 1 < len(lines) else "")


def test_mean_and_t_interval_over_seeds_with_the_null_row() -> None:
    runs = [result(s, h, flags=[]) for s, h in [(2, 0.3), (0, 0.1), (1, 0.2)]]
    real, null = cells(repro.table(runs, "r"), "naive")
    col = 5 + 2 + repro.COLUMNS.index("ff_frac_first_exp_capacity_halved")
    h = stats.t.ppf(0.975, 2) * np.std([0.1, 0.2, 0.3], ddof=1) / np.sqrt(3)
    assert real[3:5] == ["run", "0,1,2"] and real[col] == f"0.200 ± {h:.3f}"
    assert real[5] == f"30.0 ± {100 * h:.1f}"                 # final accuracy 0.2, 0.3, 0.4
    assert null[3:7] == ["null", "0,1,2", "-", "-"] and null[col] == "0.000 ± 0.000"
    assert real[-1] == "none"


def test_flags_are_shown_by_seed_and_missing_flags_said_so() -> None:
    runs = [result(0, 0.1, flags=[]), result(1, 0.9, flags=["collapsed:exp4"])]
    real, _ = cells(repro.table(runs, "r"), "naive")
    assert real[-1] == "s1: collapsed:exp4"
    assert repro.flags_cell([result(0, 0.1)]) == "not recorded"


def test_one_old_seed_is_a_bare_value_marked_and_has_no_null_row() -> None:
    text = repro.table([result(0, 0.25, null_halved=None, heldout=False, strategy="replay")], "r")
    real, after = cells(text, "replay")
    assert real[2] == f"replay {repro.OLD}" and real[4] == "0"
    col = 5 + 2 + repro.COLUMNS.index("ff_frac_first_exp_capacity_halved")
    assert real[col] == "0.250" and real[5 + 2 + repro.COLUMNS.index(
        "ff_crosscoder_fvu_heldout")] == "-"
    assert after == [""]                                       # the table ends: no null row


@pytest.mark.parametrize("values, shown", [([], "-"), ([None, 0.5], "0.500"),
                                           ([1.0, 1.0], "1.000 ± 0.000")])
def test_mean_ci_cells(values: list[float | None], shown: str) -> None:
    assert repro.mean_ci(values) == shown


def test_settings_changed_since_the_run_are_named() -> None:
    r = result(0, 0.1)
    r["config"].update(strategy="replay", strategy_params={"replay": {"mem_size": 50}})
    assert repro.stale_params(r) == ["replay.mem_size=50 (now 200)"]
    assert repro.stale_params(result(0, 0.1)) == []


def test_identical_null_rows_are_explained() -> None:
    runs = [result(0, 0.3, strategy="naive"), result(0, 0.0, strategy="replay"),
            result(0, 0.1, null_halved=0.2, strategy="ewc")]
    notes = repro.shared_nulls(repro.group(runs))
    assert len(notes) == 1 and "null rows of naive, replay are identical" in notes[0]
    assert notes[0] in [p.strip() for p in repro.table(runs, "r").split("\n\n")]  # own paragraph
