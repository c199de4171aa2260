"""ci/sae_reg_lm.py on the committed lm-v1 result files: the per-method row and every paired
difference are read off the files, Holm never lowers a p-value, and a missing method is one line.

    $ python -m pytest tests/ci/test_sae_reg_lm.py -q
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "leaderboard" / "results"
CELL = RESULTS / "text-v1" / "smollm2-135m"
sys.path.insert(0, str(ROOT / "ci"))


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "ci" / "sae_reg_lm.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _seeds(strategy: str) -> dict[int, dict]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in (CELL / strategy).glob("seed*.json")}


@pytest.mark.skipif(not (CELL / "ewc" / "seed1.json").is_file(), reason="no committed lm-v1 cells")
def test_rows_and_paired_differences_are_read_off_the_files(tmp_path: Path) -> None:
    out = tmp_path / "t.md"
    r = _script(str(RESULTS), "--method", "ewc", "--against", "naive,replay", "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    ewc, naive = _seeds("ewc"), _seeds("naive")
    both = sorted(set(ewc) & set(naive))
    row = next(line for line in text.splitlines() if line.startswith("| ewc |"))
    acc = np.mean([100 * ewc[s]["metrics"]["final_accuracy"]["value"] for s in ewc])
    assert row.split("|")[3].strip().startswith(f"{acc:.1f}")
    # the first task's forgetting: max over the rows before the last, minus the last
    first = [100 * (max(R[i][0] for i in range(len(R) - 1)) - R[-1][0])
             for R in (ewc[s]["accuracy_matrix"] for s in ewc)]
    assert row.split("|")[5].strip().startswith(f"{np.mean(first):.1f}")
    diffs = [ewc[s]["metrics"]["final_accuracy"]["value"] - naive[s]["metrics"]["final_accuracy"]["value"]
             for s in both]
    paired = next(line for line in text.splitlines() if line.startswith("| naive | final acc"))
    cells = [c.strip() for c in paired.strip("|").split("|")]
    assert float(cells[2].split("±")[0]) == pytest.approx(100 * np.mean(diffs), abs=0.01)
    assert int(cells[3]) == len(both)
    tests = [line for line in text.split("## Paired differences")[1].splitlines()
             if line.startswith(("| naive |", "| replay |"))]
    assert len(tests) == 2 * 5   # final acc, BWT, first-task forgetting, ppl ratio, train time
    for line in tests:
        c = [x.strip() for x in line.strip("|").split("|")]
        if c[4] != "nan":
            assert float(c[5]) >= float(c[4]) - 1e-12   # Holm adjusts upwards
    assert "state (MB)" in text and "not tested" in text
    # the state without the frozen SAE: the last record's bytes less its kind "sae"
    own = [(r["per_experience"][-1]["state_bytes"]
            - r["per_experience"][-1]["state_bytes_by_kind"]["sae"]) / 1e6 for r in ewc.values()]
    assert row.split("|")[8].strip().startswith(f"{np.mean(own):.3f}")


def test_a_method_without_runs_is_one_line(tmp_path: Path) -> None:
    r = _script(str(tmp_path), "--against", "naive")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "no ok runs of sae-reg, naive" in r.stderr and "--against" in r.stderr
