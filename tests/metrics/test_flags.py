"""Collapsed runs and dead layers are flagged in the result and marked in the tables.

Before, a run whose network died (the committed sae-reg split-fmnist seed 0: R's diagonal ends in
0.498, a constant output) looked like any other result.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from avalanche.core import SupervisedPlugin

from clbench import resolve_config, run
from clbench.board.rank import rank_results, render
from clbench.metrics.flags import collapsed_experiences, dead_layers, run_flags
from clbench.models import create_model
from clbench.streams import Stream

CHEAP = ["epochs=2", "mono.when=off"]


class KillAfter(SupervisedPlugin):
    """Silences ``fc2`` (bias -1e4) after experience ``exp``: its ReLU outputs 0 from then on,
    and the model answers one class for every input."""

    def __init__(self, exp: int) -> None:
        super().__init__()
        self.exp = exp

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if strategy.experience.current_experience >= self.exp:
            with torch.no_grad():
                strategy.model.body.fc2[0].bias.fill_(-1e4)


def test_collapse_needs_chance_accuracy_and_a_constant_output() -> None:
    R = [[0.99, 0.0, 0.0], [0.9, 0.97, 0.0], [0.5, 0.6, 0.5]]
    classes = [[0, 1], [2, 3], [4, 5]]
    assert collapsed_experiences(R, classes, [0.5, 0.5, 1.0]) == [2]
    assert collapsed_experiences(R, classes, [0.5, 0.5, 0.6]) == []      # hard data, not broken
    assert collapsed_experiences([[0.5, 0.96, 0.5]], classes, [0.95, 0.5, 0.5]) == [0]  # offline
    assert run_flags(R, classes, [0.5, 0.5, 1.0], ["dead:fc2@exp2"]) == ["dead:fc2@exp2",
                                                                       "collapsed:exp2"]


def test_dead_layers_reads_every_hook_layer() -> None:
    torch.manual_seed(0)
    model = create_model("mlp", (8,), 4, hidden=(6, 6))
    x = torch.randn(32, 8)
    assert dead_layers(model, x) == []
    with torch.no_grad():
        model.body.fc2[0].bias.fill_(-1e4)
    assert dead_layers(model, x) == ["fc2"]
    assert model.training  # the caller's mode is restored


def test_a_run_that_kills_its_network_is_flagged(digits_stream: Stream) -> None:
    cfg = resolve_config("split-digits", "naive", "mlp", seed=0, overrides=CHEAP)
    healthy = run(cfg, stream=digits_stream)
    assert healthy.status == "ok" and healthy.flags == []
    broken = run(cfg, stream=digits_stream, extra_plugins=[KillAfter(3)])
    assert broken.status == "ok"
    assert "dead:fc2@exp3" in broken.flags and "dead:fc2@exp4" in broken.flags
    assert "collapsed:exp4" in broken.flags and broken.to_json()["flags"] == broken.flags
    # the tables mark it beside the seeds
    results = [copy.deepcopy(healthy.to_json()), broken.to_json()]
    results[0]["config"]["seed"] = 1
    text = render(rank_results(results), "md")
    assert "2 (1 flagged)" in text


@pytest.mark.parametrize("scenario, shown", [("class-il", False), ("task-il", True),
                                             ("domain-il", True)])
def test_fwt_is_not_shown_where_it_is_fixed_by_construction(
        digits_stream: Stream, scenario: str, shown: bool) -> None:
    r = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1", "mono.when=off"]),
            stream=digits_stream).to_json()
    r["stream"]["scenario"] = scenario
    r["config"]["task_incremental"] = scenario == "task-il"
    text = render(rank_results([r]), "md")
    assert ("FWT %" in text) is shown
    assert ("FWT is not shown" in text) is not shown
