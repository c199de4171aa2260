"""ci/sae_ception_lm.py: the LM page's arms, values and paired, Holm-corrected tests."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import sae_ception_lm as page  # noqa: E402

TASKS = ["en-fr", "en-es", "en-de", "supersense", "definition", "fortune-topic"]
PARAMS = {"lam": 0.01, "top_frac": 0.01, "top_n": 25, "sharpen": "top", "cycles": 1}


def _run(strategy: str, seed: int, acc: float, csi: float, **params: Any) -> dict[str, Any]:
    sp = {"sae-ception": {**PARAMS, **params}} if strategy == "sae-ception" else {}
    return {"status": "ok", "config": {"stream": "text-v1", "strategy": strategy, "seed": seed,
                                       "strategy_params": sp},
            "stream": {"tasks": TASKS}, "accuracy_matrix": [[acc] * 6],
            "metrics": {"final_accuracy": {"value": acc}},
            "mono_lm": {"before": {"mono_csi": 0.1}, "after": {"mono_csi": csi}}}


def _results() -> list[dict[str, Any]]:
    out = []
    for s in range(5):
        out.append(_run("naive", s, 0.5 + 0.01 * s, 0.2))
        out.append(_run("sae-ception", s, 0.6 + 0.01 * s + 0.001 * (s % 2), 0.2 + 0.001 * s))
        out.append(_run("sae-ception", s, 0.5 + 0.01 * s, 0.2, sharpen="random"))
        out.append(_run("sae-ception", s, 0.5 + 0.01 * s, 0.2, top_frac=0.0, lam=0.1))
    return out


def test_arms_are_named_by_their_settings() -> None:
    base, arms = page.arms_of(_results(), "naive")
    assert sorted(base) == list(range(5))
    assert list(arms) == ["top 1% lam=0.01", "top 25 lam=0.1", "random lam=0.01"]
    assert all(sorted(runs) == list(range(5)) for runs in arms.values())


def test_values_read_metrics_tasks_and_the_mono_block() -> None:
    r = _run("naive", 0, 0.5, 0.3)
    assert page.value(r, "final_accuracy") == 0.5
    assert page.value(r, "acc:supersense") == 0.5
    assert page.value(r, "mono_csi") == 0.3 and page.value(r, "mono_csi", "before") == 0.1
    assert page.value(r, "neuron_csi") is None


def test_the_page_marks_only_holm_significant_differences() -> None:
    text = page.render(_results(), "naive", "python ci/sae_ception_lm.py R")
    row = next(line for line in text.splitlines() if line.startswith("| final accuracy"))
    cells = row.split(" | ")
    assert "**better**" in cells[4] and "Δ +0.1" in cells[4]       # top 1%: +0.1 every seed
    assert "**better**" not in cells[6] and "**worse**" not in cells[6]   # random: level
    # 3 arms x (final accuracy, two task accuracies, CSI) against naive, then the top-1% arm
    # against the random arm of its lambda (there is no schedule control among these runs)
    n_tests = 3 * 4 + 1 * 4
    assert f"all {n_tests} tests" in text
    better = text.split("**Better**")[1].split("**Worse**")[0].split("): ", 1)[1]
    entries = [e.strip() for e in better.strip().rstrip(".").split(";")]
    assert "top 1% lam=0.01: final accuracy" in entries                       # vs naive
    assert "top 1% lam=0.01: final accuracy (vs random lam=0.01)" in entries


def test_controls_pair_each_pull_with_the_schedule_and_the_random_targets() -> None:
    arms = ["top 1% lam=0.01", "top 1% lam=0.3", "top 25 lam=0.3", page.SCHEDULE,
            "random lam=0.3"]
    assert page.controls(arms) == [
        ("top 1% lam=0.01", page.SCHEDULE),
        ("top 1% lam=0.3", page.SCHEDULE), ("top 1% lam=0.3", "random lam=0.3"),
        ("top 25 lam=0.3", page.SCHEDULE), ("top 25 lam=0.3", "random lam=0.3"),
        ("random lam=0.3", page.SCHEDULE)]
    assert page.controls(["top 1% lam=0.01"]) == []


def test_the_schedule_control_is_one_arm_whatever_its_latents() -> None:
    """lam 0 has no aux term, so its top setting is not part of its name; a pulling arm that
    equals it on every seed is not better than it."""
    runs = []
    for s in range(5):
        runs.append(_run("naive", s, 0.5 + 0.01 * s, 0.2))
        runs.append(_run("sae-ception", s, 0.55 + 0.01 * s, 0.2, lam=0.0))
        runs.append(_run("sae-ception", s, 0.55 + 0.01 * s, 0.2))
    base, arms = page.arms_of(runs, "naive")
    assert list(arms) == [page.SCHEDULE, "top 1% lam=0.01"]
    text = page.render(runs, "naive", "python ci/sae_ception_lm.py R")
    table = text.split("**Against the controls**")[1]
    row = next(line for line in table.splitlines() if line.startswith("| final accuracy"))
    assert "Δ +0.0000" in row and "**better**" not in row
    assert f"all {2 * 4 + 4} tests" in text
