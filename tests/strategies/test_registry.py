"""Every registered strategy runs on a real stream through a stock Avalanche template."""
from __future__ import annotations

import math

import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins.evaluation import EvaluationPlugin

from clbench import STRATEGIES, resolve_config, run
from clbench.run.cost import module_bytes
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.strategy_api import parse_combo
from clbench.streams import Stream

FAST = ["epochs=1"]


@pytest.mark.parametrize("name", [e.name for e in STRATEGIES] + ["replay+ewc", "der+lwf"])
def test_strategy_runs_and_reports(name: str, digits_stream: Stream) -> None:
    r = run(resolve_config("split-digits", name, "mlp", 0, FAST), stream=digits_stream)
    assert r.status == "ok", r.error
    T = digits_stream.n_experiences
    rows = 1 if STRATEGIES.get(name.split("+")[0]).obj.offline else T
    assert len(r.accuracy_matrix) == rows and all(len(row) == T for row in r.accuracy_matrix)
    assert 0.0 <= r.metric("final_accuracy") <= 1.0
    assert r.metric("train_seconds") > 0 and r.metric("model_bytes") > 0


def _state(name: str, stream: Stream, overrides: list[str] = FAST) -> float:
    r = run(resolve_config("split-digits", name, "mlp", 0, overrides), stream=stream)
    assert r.status == "ok", r.error
    return r.metric("state_bytes")


def test_state_bytes_pinned_for_methods_with_known_state(digits_stream: Stream) -> None:
    model = create_model("mlp", digits_stream.input_shape, digits_stream.n_classes)
    mb = module_bytes(model)
    bps = digits_stream.nbytes_per_sample()
    T = digits_stream.n_experiences
    assert _state("naive", digits_stream) == 0
    # replay: 200 samples plus the reservoir buffer's float32 weight per sample
    assert _state("replay", digits_stream) == 200 * (bps + 4)
    assert _state("ewc", digits_stream) == 2 * T * mb          # (theta*, F) per experience
    assert _state("ewc-online", digits_stream) == 2 * mb       # one running pair
    assert _state("lwf", digits_stream) == mb                  # the previous model
    der = run(resolve_config("split-digits", "der", "mlp", 0, FAST), stream=digits_stream)
    kinds = der.per_experience[-1]["state_bytes_by_kind"]
    assert kinds["samples"] == 200 * bps                               # 200 stored inputs
    assert kinds["tensors"] >= 200 * 4 * digits_stream.n_classes       # + their logits
    assert _state("replay", digits_stream, FAST + ["replay.mem_size=50"]) == 50 * (bps + 4)


def test_accuracy_matrix_matches_avalanche_metric(digits_stream: Stream) -> None:
    """R computed by clbench equals Avalanche's own per-experience accuracy on the same run."""
    ev = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    r = run(resolve_config("split-digits", "replay", "mlp", 0, FAST), stream=digits_stream,
            evaluator=ev)
    allm = ev.get_all_metrics()
    T = digits_stream.n_experiences
    for j in range(T):
        key = f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"
        values = allm[key][1]          # one value per eval call: untrained, then after each exp
        assert values[0] == pytest.approx(r.random_init_accuracy[j], abs=1e-12)
        assert values[1:] == pytest.approx([row[j] for row in r.accuracy_matrix], abs=1e-12)


def test_same_seed_same_matrix(digits_stream: Stream) -> None:
    cfg = resolve_config("split-digits", "replay+ewc", "mlp", 3, FAST)
    a, b = run(cfg, stream=digits_stream), run(cfg, stream=digits_stream)
    assert a.accuracy_matrix == b.accuracy_matrix


def test_divergence_is_recorded_not_raised(digits_stream: Stream) -> None:
    r = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1", "lr=1e12"]),
            stream=digits_stream)
    assert r.status == "failed" and "loss became" in r.error
    assert math.isnan(r.metric("final_accuracy"))


@pytest.mark.parametrize("combo, fragment", [
    ("der+cumulative", "combine at most one"),
    ("joint+ewc", "joint training cannot be combined"),
    ("ewc+ewc", "names a method twice"),
    ("replay+", "malformed strategy"),
    ("replya", "did you mean 'replay'"),
])
def test_bad_combinations_are_user_errors(combo: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment):
        parse_combo(combo)


@pytest.fixture(scope="module")
def digits_task_il() -> Stream:
    from clbench.streams import build_stream
    return build_stream("split-digits", seed=0, task_incremental=True)


@pytest.mark.parametrize("name", [e.name for e in STRATEGIES])
def test_task_incremental_runs_or_refuses_clearly(name: str, digits_task_il: Stream) -> None:
    overrides = FAST + ["task_incremental=true", "mono.when=off"]
    spec = STRATEGIES.get(name).obj
    if spec.no_task_il:
        with pytest.raises(ClbenchError, match="cannot run task-incremental"):
            resolve_config("split-digits", name, "mlp", 0, overrides)
        return
    r = run(resolve_config("split-digits", name, "mlp", 0, overrides), stream=digits_task_il)
    assert r.status == "ok", r.error
    assert r.stream["scenario"] == "task-il"
    # each head sees only its own 2 classes: the first experience is learned well above chance
    assert r.accuracy_matrix[0][0] > 0.6


def test_si_accumulates_importance_on_cpu(digits_stream: Stream) -> None:
    """Avalanche 0.6's SI aliases its weight snapshots on CPU (the importance stays 0 and SI
    equals naive); clbench's CPUSafeSI copies them and keeps the importance non-negative."""
    from clbench.strategies.baselines import CPUSafeSI

    cfg = resolve_config("split-digits", "si", "mlp", 0, FAST + ["mono.when=off"])
    holder: list[CPUSafeSI] = []

    class Spy(CPUSafeSI):
        def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
            super().after_training_exp(strategy, **kwargs)
            holder.append(self)

    import clbench.strategies.baselines as baselines
    original = baselines.CPUSafeSI
    baselines.CPUSafeSI = Spy
    try:
        r_si = run(cfg, stream=digits_stream)
    finally:
        baselines.CPUSafeSI = original
    omega = torch.cat([p.data.flatten() for p in holder[-1].ewc_data[1].values()])
    assert float(omega.max()) > 0 and float(omega.min()) >= 0
    r_naive = run(resolve_config("split-digits", "naive", "mlp", 0, FAST + ["mono.when=off"]),
                  stream=digits_stream)
    assert r_si.accuracy_matrix != r_naive.accuracy_matrix


def test_gdumb_fits_its_memory_with_its_paper_s_schedule(digits_stream: Stream) -> None:
    """Regression: GDumb used to retrain its memory for the run's epochs at the run's batch size
    (on the MNIST family: 2 SGD steps) and sat at chance (9.3 % on perm-fmnist, 15.5 % on
    split-digits). Refit from scratch with SGDR for its own epochs, it learns its memory."""
    cfg = resolve_config("split-digits", "gdumb", "mlp", 0, ["epochs=1", "mono.when=off",
                                                             "gdumb.epochs=32"])
    r = run(cfg, stream=digits_stream)
    assert r.status == "ok" and r.flags == []
    assert r.metric("final_accuracy") > 0.6          # 10 classes: chance is 0.1
    starved = run(resolve_config("split-digits", "gdumb", "mlp", 0,
                                 ["epochs=1", "mono.when=off", "gdumb.epochs=1"]),
                  stream=digits_stream)
    assert starved.metric("final_accuracy") < r.metric("final_accuracy") - 0.2
