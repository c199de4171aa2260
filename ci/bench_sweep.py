"""``python ci/bench.py sweep``: one small suite run by each executor, wall times side by side.

    python ci/bench.py sweep                   # local, process (2 workers), ray (2 workers)
    python ci/bench.py sweep --executors local,process --workers 2

Each executor runs the same sweep as its own ``clbench run`` process into a fresh temporary
results folder, so every wall time includes what a user waits for: importing clbench, starting
workers (``process`` spawns them, ``ray`` also starts a local cluster) and writing results.
Every run uses one torch thread per cell (``--threads 1``), so the executors do the same
arithmetic and must give identical accuracy matrices, which is checked. The suite:
``split-digits`` and ``split-mnist1d`` x naive, ewc, replay, lwf x seeds 0, 1 (16 cells, the
default 10 epochs, monosemanticity block off), about 40 s on one core.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAMS, STRATEGIES, SEEDS = "split-digits,split-mnist1d", "naive,ewc,replay,lwf", "0,1"
OVERRIDES = ["mono.when=off"]


def _clbench() -> list[str]:
    script = Path(sys.executable).parent / "clbench"
    return [str(script)] if script.exists() else [sys.executable, "-m", "clbench.cli"]


def time_sweep(executor: str, workers: int, results: Path, seeds: str = SEEDS) -> float:
    """Wall seconds of one ``clbench run`` of the suite with ``executor``."""
    cmd = [*_clbench(), "run", "--stream", STREAMS, "--strategy", STRATEGIES, "--seeds", seeds,
           *[a for o in OVERRIDES for a in ("--set", o)], "--threads", "1", "--quiet",
           "--results", str(results), "--executor", executor]
    if executor != "local":
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench.py sweep: {executor} failed:\n{p.stderr[-2000:]}")
    return elapsed


def matrices(results: Path) -> dict[str, list[list[float]]]:
    """Relative result path -> accuracy matrix, for every result under ``results``."""
    from clbench.results import load_results  # lazy: --help answers without importing torch

    out = {}
    for r in load_results(results):
        c = r["config"]
        out[f"{c['stream']}/{c['strategy']}/seed{c['seed']}"] = r["accuracy_matrix"]
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench.py sweep")
    ap.add_argument("--executors", default="local,process,ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", default=SEEDS,
                    help="seeds per cell (more seeds: more cells, start-up amortised)")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.executors.split(",") if n.strip()]
    root = Path(tempfile.mkdtemp(prefix="clbench-bench-sweep-"))
    times: dict[str, float] = {}
    mats: dict[str, dict[str, list[list[float]]]] = {}
    try:
        for name in names:
            times[name] = time_sweep(name, a.workers, root / name, a.seeds)
            mats[name] = matrices(root / name)
            print(f"{name:<8} {times[name]:7.1f} s  ({len(mats[name])} results)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_cells = len(STREAMS.split(",")) * len(STRATEGIES.split(",")) * len(a.seeds.split(","))
    print(f"\n{STREAMS} x {STRATEGIES} x seeds {a.seeds} ({n_cells} cells), 1 torch thread per "
          f"cell, {a.workers} workers for process/ray, {os.cpu_count()} cores")
    base = names[0]
    for name in names:
        print(f"  {name:<8} {times[name]:7.1f} s   speed-up over {base}: "
              f"{times[base] / times[name]:.2f}x")
    ref = mats[base]
    same = all(mats[n] == ref and len(ref) == n_cells for n in names)
    print(f"  accuracy matrices identical across {', '.join(names)}: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)
