"""ci/lm_forgetting.py on the committed lm-v1 result files: the table is read off R, the
figure is a PNG, and a missing cell is one line naming the command that makes it.

    $ python -m pytest tests/ci/test_lm_forgetting.py -q
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "leaderboard" / "results"
CELL = RESULTS / "text-v1" / "smollm2-135m"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "ci" / "lm_forgetting.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.skipif(not (CELL / "naive" / "seed0.json").is_file(), reason="no committed lm-v1 cell")
def test_the_table_is_read_off_each_runs_accuracy_matrix(tmp_path: Path) -> None:
    r = _script("--results", str(RESULTS), "--seeds", "0", "--strategies", "naive,ewc",
                "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    png = (tmp_path / "forgetting-by-task.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in (tmp_path / "forgetting-by-task.md").read_text().splitlines()
            if line.startswith("| naive") or line.startswith("| ewc")}
    d = json.loads((CELL / "naive" / "seed0.json").read_text())
    R, b, tasks = d["accuracy_matrix"], d["random_init_accuracy"], d["stream"]["tasks"]
    for j, t in enumerate(tasks):
        cells = [c.strip() for c in rows[("naive", t)].strip("|").split("|")]
        pre, own, end, gain, loss = (float(c) for c in cells[2:7])
        assert (pre, own, end) == pytest.approx((100 * b[j], 100 * R[j][j], 100 * R[-1][j]), abs=0.051)
        assert gain == pytest.approx(own - pre, abs=0.11) and loss == pytest.approx(own - end, abs=0.11)
    ppl = d["general_ppl"]
    assert f"ratio {ppl[-1] / ppl[0]:.2f}" in rows[("naive", "prose ppl")]


def test_a_missing_cell_is_one_line_with_the_command(tmp_path: Path) -> None:
    r = _script("--results", str(tmp_path), "--seeds", "0", "--strategies", "naive",
                "--out-dir", str(tmp_path / "out"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    msg = r.stderr.strip()
    assert "\n" not in msg and "clbench run --stream text-v1 --model smollm2-135m --strategy naive" in msg
    assert not (tmp_path / "out" / "forgetting-by-task.md").exists()
