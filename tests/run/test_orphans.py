"""Killing ``clbench run --executor process`` (SIGKILL or SIGTERM of the driver alone, not its
process group) leaves no worker behind: workers die with their parent (parent-death signal and
a watchdog), and SIGTERM stops the pool and exits non-zero with one line (issue 17, item 13)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

SEEDS = ",".join(map(str, range(40)))  # far more cells than the test waits for


def _command(results: Path) -> list[str]:
    return [sys.executable, "-m", "clbench", "run", "--stream", "split-digits", "--strategy",
            "naive", "--seeds", SEEDS, "--set", "epochs=20", "--set", "mono.when=off",
            "--threads", "1", "--quiet", "--results", str(results), "--executor", "process",
            "--workers", "2"]


def _workers(proc: "psutil.Process") -> list["psutil.Process"]:
    """The driver's pool workers (spawned interpreters), not its resource tracker."""
    out = []
    for c in proc.children(recursive=True):
        try:
            if any("spawn_main" in part for part in c.cmdline()):
                out.append(c)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_driver_leaves_no_worker(sig: signal.Signals, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log, err = tmp_path / "run.log", tmp_path / "run.err"
    with open(log, "wb") as out, open(err, "wb") as errors:  # files: an orphan holds no pipe
        proc = subprocess.Popen(_command(tmp_path / "results"), stdout=out, stderr=errors,
                                env=env, start_new_session=True)
    driver = psutil.Process(proc.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2:
            assert proc.poll() is None, log.read_text() + err.read_text()
            assert time.monotonic() < deadline, "no 2 workers within 120 s"
            time.sleep(0.1)
            workers = _workers(driver)
        while not any((tmp_path / "results").rglob("seed*.json")):  # workers are running cells
            assert proc.poll() is None, log.read_text() + err.read_text()
            assert time.monotonic() < deadline, "no result within 120 s"
            time.sleep(0.1)
        proc.send_signal(sig)          # the driver only: its workers are not signalled
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers {[p.pid for p in alive]} outlived their parent"
    finally:
        for p in [*workers, driver]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait()
    stderr = err.read_text()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode not in (0, -signal.SIGTERM), proc.returncode  # it handled it
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("clbench: "), stderr
        assert "Traceback" not in stderr
