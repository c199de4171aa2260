"""ci/sae_ception_protocol.py: SAE-ception's one-task protocol, its arms and its paired table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import sae_ception_protocol as proto  # noqa: E402


def _args(**kw: object) -> argparse.Namespace:
    base = dict(hidden=[16, 16], epochs=20, lr=0.01, batch_size=64, cycles=1, cycle_epochs=1, top_ns=["25"],
                sae="topk", expansion=16, k=4)
    return argparse.Namespace(**{**base, **kw})


def test_the_table_marks_only_what_beats_the_control_after_holm() -> None:
    """An arm better than lam=0 by a constant on every seed is marked better on every metric
    whose direction it improves; an arm equal to the control up to noise is marked nothing."""
    rng = np.random.default_rng(0)
    per: dict[int, dict[str, list[dict[str, float]]]] = {}
    for s in range(5):
        ctrl = {m: float(rng.random()) for m in proto.METRICS}
        up = {m: v + (0.2 if proto.METRICS[m][1] else -0.2) + 1e-3 * rng.standard_normal()
              for m, v in ctrl.items()}
        same = {m: v + 1e-3 * rng.standard_normal() for m, v in ctrl.items()}
        per[s] = {"lam=0": [ctrl, ctrl], "lam=0.1": [ctrl, up], "random (lam=0.1)": [ctrl, same]}
    text = proto.render("digits", per, _args(), "cmd")
    assert "paired t-test over seeds against the `lam=0` arm" in text and "Holm-corrected over the 16 tests" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "better |" in line
            or line.startswith("| test accuracy")]
    for label, _ in proto.METRICS.values():
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = row.split(" | ")
        assert "**better**" in cells[4] and "**" not in cells[5], row
    assert rows
    holds = next(line for line in text.splitlines() if line.startswith("**What holds**"))
    assert "lam=0.1: test accuracy" in holds and "random" not in holds


def test_arms_and_top_n() -> None:
    a = _args(lams=[0.1, 0.3], top_ns=["25", "1%"], control_lam=0.1)
    arms = proto.protocol_arms(a)
    assert arms["lam=0"] == (0.0, "top", 25)
    assert arms["top 1% lam=0.3"] == (0.3, "top", 3)            # 1% of 16 x 16 = 256 latents
    assert arms["random 25 lam=0.1"] == (0.1, "random", 25)
    assert len(arms) == 1 + 2 * (2 + 1)


def test_a_tiny_protocol_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two seeds on the embedded digits, one cycle, one lam: every arm is measured after F_0
    and after the cycle, all arms start from the same F_0, and the files are written."""
    monkeypatch.setattr(proto, "EVAL_SAE", {**proto.EVAL_SAE, "steps": 20, "max_train": 500})
    out = tmp_path / "p.md"
    rc = proto.main(["--dataset", "digits", "--seeds", "0,1", "--lams", "0.3", "--cycles", "1",
                     "--epochs", "1", "--hidden", "8,8", "--out", str(out)])
    assert rc == 0
    raw = json.loads((tmp_path / "p.json").read_text())
    assert set(raw) == {"0", "1"}
    for seed in raw.values():
        assert set(seed) == {"lam=0", "top 25 lam=0.3", "random 25 lam=0.1", "top 1% lam=0.3",
                             "random 1% lam=0.1"}
        f0 = [trace[0] for trace in seed.values()]
        assert all(t == f0[0] for t in f0)                      # one F_0 for every arm
        assert all(len(trace) == 2 for trace in seed.values())
        assert 0.1 < seed["lam=0"][1]["accuracy"] <= 1.0
        assert seed["top 1% lam=0.3"][1] != seed["lam=0"][1]     # the aux term changed the model
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "![metrics over the cycles](p.png)" in out.read_text()


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "cifar10"], "--dataset cifar10: choose one of"),
    (["--seeds", "0"], "give at least 2 distinct seeds"),
    (["--lams", "0,0.1"], "--lams must be positive"),
    (["--top-ns", "25,x%"], "--top-ns x%: give a count"),
])
def test_bad_arguments_are_one_line_errors(argv: list[str], fragment: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert proto.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sae_ception_protocol: error:") and fragment in err and "\n" not in err
