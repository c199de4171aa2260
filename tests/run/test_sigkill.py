"""A sweep killed by SIGKILL mid-way leaves only valid result files, and the same command run
again finishes it with every cell done exactly once (the cells done before the kill untouched)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clbench.results import load_result, load_results
from clbench.suites import Cell
from clbench.run.sweep import is_done, plan

SEEDS = list(range(6))
CELLS = [Cell("split-digits", "mlp", "naive", s) for s in SEEDS]
OVERRIDES = ["epochs=3", "mono.when=off"]  # about half a second per cell on one thread


def _command(results: Path, executor: str) -> list[str]:
    script = Path(sys.executable).parent / "clbench"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "clbench.cli"]
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    extra = ["--workers", "2"] if executor != "local" else []
    return [*cmd, "run", "--stream", "split-digits", "--strategy", "naive",
            "--seeds", ",".join(map(str, SEEDS)), *sets, "--threads", "1", "--quiet",
            "--results", str(results), "--executor", executor, *extra]


def _snapshot(results: Path) -> dict[Path, tuple[int, bytes]]:
    """Every result file (``seed*.json``, what the loader reads) with its mtime and bytes."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in results.rglob("seed*.json")}


@pytest.mark.parametrize("executor", ["local", pytest.param("process", marks=pytest.mark.slow)])
def test_sigkill_then_rerun_does_every_cell_exactly_once(executor: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    cmd = _command(results, executor)
    expected = {p.path for p in plan(CELLS, OVERRIDES, results)}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # its own process group, workers included
        try:
            deadline = time.monotonic() + 240
            while not any(results.rglob("seed*.json")):
                assert proc.poll() is None, (tmp_path / "first.log").read_text()
                assert time.monotonic() < deadline, "no result file within 240 s"
                time.sleep(0.01)
            time.sleep(0.05)  # the next cell is now training
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = _snapshot(results)
    assert 1 <= len(before) < len(CELLS), f"kill came too late: {len(before)} cells done"
    assert set(before) <= expected
    for p in before:
        assert load_result(p)["status"] == "ok"         # no partial or corrupt result file
    # temp files of an interrupted write and the killed run's cell lock may remain; the loader
    # ignores them, and the next run takes a dead owner's lock over (clbench.run.lock)
    leftovers = [p for p in results.rglob("*") if p.is_file() and p not in before]
    assert all(p.name.startswith(".") and p.name.endswith((".tmp", ".lock"))
               for p in leftovers), leftovers
    # the local executor claims a cell just before it runs it (one lock at most); the process
    # pool claims all of its cells at the start (README, Reliability: not guaranteed)
    claimed = 1 if executor == "local" else len(CELLS) - len(before)
    assert sum(p.name.endswith(".lock") for p in leftovers) <= claimed
    assert len(load_results(results)) == len(before)
    assert sum(is_done(p) for p in expected) == len(before)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{len(CELLS)} results in" in again.stdout
    after = _snapshot(results)
    assert set(after) == expected                         # every cell, each in its own file
    assert not list(results.rglob("*.lock"))               # the stale lock was taken and released
    assert all(load_result(p)["status"] == "ok" for p in after)
    for p, (mtime, data) in before.items():               # not re-run: same bytes, same mtime
        assert after[p] == (mtime, data), f"{p} was re-run"
    created_before = {load_result(p)["provenance"]["created"] for p in before}
    created_new = {load_result(p)["provenance"]["created"] for p in after if p not in before}
    assert max(created_before) <= min(created_new)
