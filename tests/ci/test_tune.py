"""ci/tune.py: the seeded, equal-budget search that chose sae-reg's, EWC's and LwF's defaults."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import tune  # noqa: E402

from clbench.strategy_api import STRATEGIES  # noqa: E402


@pytest.mark.parametrize("method", sorted(tune.SPACES))
def test_draws_are_seeded_typed_and_start_with_the_defaults(method: str) -> None:
    trials = tune.draw(method, 6, seed=0)
    assert trials[0] == {} and len(trials) == 6
    assert trials == tune.draw(method, 6, seed=0) and trials != tune.draw(method, 6, seed=1)
    defaults = STRATEGIES.get(method).obj.defaults
    for t in trials[1:]:
        assert set(t) == set(tune.SPACES[method]) <= set(defaults)
        for k, v in t.items():    # every draw is a value the override parser accepts
            assert type(v) is type(defaults[k]), (k, v)


def test_a_bigger_budget_extends_a_smaller_one() -> None:
    """Trials 0..n-1 are the same whatever n: a search can be extended without re-running."""
    assert tune.draw("sae-reg", 3, seed=0) == tune.draw("sae-reg", 5, seed=0)[:3]


def test_report_picks_the_best_trial_and_breaks_ties_by_trial_number(tmp_path: Path) -> None:
    rows = [
        {"stream": "s", "method": "ewc", "trial": 0, "status": "ok", "val_final_accuracy": 0.5,
         "resolved": {"ewc_lambda": 100.0}},
        {"stream": "s", "method": "ewc", "trial": 2, "status": "ok", "val_final_accuracy": 0.7,
         "resolved": {"ewc_lambda": 7.0}},
        {"stream": "s", "method": "ewc", "trial": 1, "status": "ok", "val_final_accuracy": 0.7,
         "resolved": {"ewc_lambda": 3.0}},
        {"stream": "s", "method": "ewc", "trial": 3, "status": "failed", "val_final_accuracy": None,
         "resolved": {"ewc_lambda": 1e5}},
    ]
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "t.md"
    text = tune.report([str(src)], str(out))
    assert out.read_text() == text
    row = next(line for line in text.splitlines() if line.startswith("| s | ewc"))
    assert "| 1 | 4 (1 failed) | 3.0 + default | 50.00 | 70.00 (trial 1) | ewc_lambda=3.0 |" in row


@pytest.mark.parametrize("method", sorted(tune.SPACES))
def test_per_dim_budget_is_the_same_per_searched_parameter(method: str) -> None:
    """--per-dim N: 1 + N x D trials, so every method gets N draws per searched parameter."""
    dims = len(tune.SPACES[method])
    assert tune.budget(method, 16, 3) == 1 + 3 * dims
    assert tune.budget(method, 16, None) == 16
    with pytest.raises(SystemExit, match="no search space for 'naive'"):
        tune.budget("naive", 16, 2)
