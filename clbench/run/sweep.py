"""A sweep: many cells (stream, model, strategy, seed) run in turn, each written atomically.

    >>> paths = run_cells(load_suite("quick").cells(), results="results")

Every cell's config is resolved before the first run, so a typo in any of them fails at once.
A cell whose valid result already exists is skipped (``resume=True``), so a sweep stopped at
any point — even by SIGKILL — finishes on the next start with every cell done once. A stream
is built once per (stream, seed) and shared by the cells that use it. Cells run in this process
(``executor="local"``), in a process pool or on Ray (:mod:`clbench.run.executors`).

Several sweeps may share one results folder: a cell is claimed with a lock file before it runs
(:mod:`clbench.run.lock`; the local executor claims one cell at a time, the parallel ones all of
their cells at the start), so two ``clbench run`` on the same folder never run a cell twice; a
dead sweep's locks are taken over. A sweep starts by removing stale temp files left in the
folder by a killed write (:func:`clbench.atomic.remove_stale_temps`). A result that cannot be
written (disk full) stops the sweep with one line naming the folder and what it holds.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from clbench.atomic import remove_stale_temps
from clbench.errors import ClbenchError
from clbench.results import RunResult, write_result
from clbench.run.executors import (Executor, LocalExecutor, SweepOptions, check_layers,
                                   create_executor, is_text)
from clbench.run.lock import CellLock, holder
from clbench.run.logs import LogSpec
from clbench.run.plan import Planned, is_done, plan
from clbench.suites import Cell

__all__ = ["Planned", "is_done", "plan", "run_cells"]


def run_cells(cells: Iterable[Cell], results: str | Path, overrides: list[str] | None = None,
              data_root: str | None = None, resume: bool = True, task_incremental: bool = False,
              download: bool = False, show_progress: bool = True,
              executor: str | Executor = "local", workers: int | None = None,
              address: str | None = None, threads: int | None = None,
              log: LogSpec | None = None) -> list[Path]:
    """Run every cell not yet done on ``executor`` (see :mod:`clbench.run.executors`); returns the
    result paths of all cells (done or skipped). Results are written here, one at a time.

    ``executor`` is a registered name (made with ``workers``/``address``/``threads`` and closed
    at the end) or an :class:`~clbench.run.executors.Executor` the caller made, which is started if
    needed and left open, so several sweeps can share warm workers. ``log`` adds Avalanche's
    loggers to every cell run (:mod:`clbench.run.logs`; not on text streams)."""
    if isinstance(executor, str):
        runner, owned = create_executor(executor, workers, address, threads), True
    else:
        runner, owned = executor, False
    planned = plan(cells, list(overrides or []), results, data_root, task_incremental)
    remove_stale_temps(results)
    todo = [p for p in planned if not (resume and is_done(p.path))]
    if log is not None and (text := [p for p in todo if is_text(p)]):
        raise ClbenchError(f"--log: stream {text[0].cell.stream!r} is scored outside Avalanche's "
                           "evaluation, so it has no curves to log; drop --log or the text stream")
    opts = SweepOptions(data_root, task_incremental, download, show_progress, log)
    locks: dict[Path, CellLock] = {}
    left: list[str] = []   # who holds each cell another sweep runs
    written: list[Path] = []
    try:
        check_layers(todo, opts)
        if todo:
            runner.start(todo, opts)  # before any bar is drawn: missing data fails cleanly
        # leave=False: a failing sweep's error line is not mixed with a bar
        with tqdm(total=len(planned), initial=len(planned) - len(todo), desc="runs", unit="run",
                  disable=not show_progress, dynamic_ncols=True, leave=False) as bar:

            def saved(e: ClbenchError) -> ClbenchError:
                """``e`` (a write that failed) with what this sweep saved before it."""
                return ClbenchError(f"{e}; {len(written)} results of this sweep were saved in "
                                    f"{results}/ before it: make room and run the same command "
                                    "again to resume")

            def claim(p: Planned) -> bool:
                """Lock ``p``'s cell; False if another sweep holds it or has just finished it."""
                try:
                    lock = CellLock.acquire(p.path)
                except ClbenchError as e:  # a full disk: say what the sweep saved
                    raise saved(e) from None
                if lock is None:
                    left.append(holder(p.path))
                elif resume and is_done(p.path):  # done by another sweep since we planned
                    lock.release()
                else:
                    locks[p.path] = lock
                    return True
                bar.update(1)
                return False

            def record(p: Planned, result: RunResult) -> Path:
                result.extra["label"] = p.cell.strategy + p.tag
                try:
                    path = write_result(result, results, p.tag)
                except ClbenchError as e:
                    raise saved(e) from None
                finally:
                    if (lock := locks.pop(p.path, None)) is not None:
                        lock.release()
                written.append(path)
                if result.status != "ok":
                    tqdm.write(f"failed: {p.cell} : {str(result.error).splitlines()[0]}")
                bar.set_postfix_str(f"{p.cell.stream} {p.cell.strategy} seed {p.cell.seed}")
                bar.update(1)
                return path

            if isinstance(runner, LocalExecutor):  # claim each cell just before it runs
                for p in todo:
                    if claim(p):
                        runner.run([p], opts, record)
            elif mine := [p for p in todo if claim(p)]:
                runner.run(mine, opts, record)
    finally:
        for lock in locks.values():
            lock.release()
        if owned:
            runner.close()
    if left:
        print(f"clbench: {len(left)} cells left to another clbench run on {results}/ "
              f"({left[0]}); run again once it ends to see their results",
              file=sys.stderr)
    return [p.path for p in planned]
