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
    assert "seeded 20% of" in text        # rows without a recorded fraction: the default 0.2


def test_report_lists_every_trial_with_its_split_and_general_ability(tmp_path: Path) -> None:
    """A text search's report states the validation share the trials used and lists each trial,
    with the perplexity ratio on held-out prose, so close trials are seen as close."""
    rows = [{"stream": "text-v1", "model": "smollm2-135m", "method": "ewc", "trial": t,
             "status": "ok", "validation": 0.25, "val_final_accuracy": acc,
             "val_forgetting_max": 0.1, "val_general_ppl_ratio": ppl, "seconds": 900.0,
             "resolved": {"ewc_lambda": lam}}
            for t, (lam, acc, ppl) in enumerate([(100.0, 0.4733, 1.174), (1e5, 0.4833, 1.046)])]
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tune.report([str(src)], None)
    assert "seeded 25% of" in text and "20%" not in text
    assert "| text-v1 | smollm2-135m | ewc | 0 (default) | ewc_lambda=100 | 47.33 | 10.00 | 1.174 |" \
        in text
    assert "| text-v1 | smollm2-135m | ewc | 1 | ewc_lambda=100000 | 48.33 | 10.00 | 1.046 |" in text


@pytest.mark.parametrize("method", sorted(tune.SPACES))
def test_per_dim_budget_is_the_same_per_searched_parameter(method: str) -> None:
    """--per-dim N: 1 + N x D trials, so every method gets N draws per searched parameter."""
    dims = len(tune.SPACES[method])
    assert tune.budget(method, 16, 3) == 1 + 3 * dims
    assert tune.budget(method, 16, None) == 16
    with pytest.raises(SystemExit, match="no search space for 'naive'"):
        tune.budget("naive", 16, 2)


def test_grid_values_replace_the_draws_and_take_the_defaults_type() -> None:
    grid = tune.parse_grid(["ewc.ewc_lambda=1e3,1e4", "gdumb.mem_size=50"])
    assert grid == {"ewc": [{"ewc_lambda": 1000.0}, {"ewc_lambda": 10000.0}],
                    "gdumb": [{"mem_size": 50}]}
    assert type(grid["gdumb"][0]["mem_size"]) is int


@pytest.mark.parametrize("spec, problem", [
    ("ewc.ewc_lambda", "expected method.param=v1,v2"),
    ("ewc_lambda=1,2", "expected method.param=v1,v2"),
    ("ewc.lam=1,2", "has no parameter 'lam'"),
    ("nope.lam=1", "has no parameter 'lam'"),
    ("ewc.ewc_lambda=big", "values must be floats"),
])
def test_a_bad_grid_is_one_clear_error(spec: str, problem: str) -> None:
    with pytest.raises(SystemExit, match=problem):
        tune.parse_grid([spec])


def test_two_grids_for_one_method_are_refused() -> None:
    with pytest.raises(SystemExit, match="one grid parameter per method"):
        tune.parse_grid(["ewc-online.ewc_lambda=1", "ewc-online.decay_factor=0.9"])


def test_set_pins_the_default_trial_and_the_grid_wins_in_the_others() -> None:
    """The README's text-v1 command: --set ewc.ewc_lambda=100 fixes trial 0, the grid the rest."""
    from clbench import resolve_config

    extra = ["validation=0.25", "ewc.ewc_lambda=100"]
    lams = [resolve_config("text-v1", "ewc", "smollm2-135m", 0,
                           tune.trial_overrides("ewc", p, extra)).strategy_params["ewc"]["ewc_lambda"]
            for p in [{}, {"ewc_lambda": 1e4}]]
    assert lams == [100.0, 1e4]
    cfg = resolve_config("text-v1", "ewc", "smollm2-135m", 0, tune.trial_overrides("ewc", {}, extra))
    assert cfg.train["validation"] == 0.25
