"""A sweep: many cells (stream, model, strategy, seed) run in turn, each written atomically.

    >>> paths = run_cells(load_suite("quick").cells(), results="results")

Every cell's config is resolved before the first run, so a typo in any of them fails at once.
A cell whose valid result already exists is skipped (``resume=True``), so a sweep stopped at
any point — even by SIGKILL — finishes on the next start with every cell done once. A stream
is built once per (stream, seed) and shared by the cells that use it. Cells run in this process
(``executor="local"``), in a process pool or on Ray (:mod:`clbench.executors`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from clbench.config import RunConfig, resolve_config
from clbench.errors import ClbenchError
from clbench.executors import Executor, SweepOptions, create_executor
from clbench.results import RunResult, load_result, params_tag, result_path, write_result
from clbench.suites import Cell


@dataclass(frozen=True)
class Planned:
    cell: Cell
    config: RunConfig
    tag: str
    path: Path


def plan(cells: Iterable[Cell], overrides: list[str], results: str | Path,
         data_root: str | None = None, task_incremental: bool = False) -> list[Planned]:
    """Resolve every cell (errors surface before anything runs) and where its result goes."""
    out = []
    extra = ["task_incremental=true"] if task_incremental else []
    for c in cells:
        cfg = resolve_config(c.stream, c.strategy, c.model, c.seed, [*overrides, *extra], data_root)
        default = resolve_config(c.stream, c.strategy, c.model, c.seed).to_dict()
        tag = params_tag(cfg.to_dict(), default)
        out.append(Planned(c, cfg, tag, result_path(results, cfg.to_dict(), tag)))
    return out


def is_done(path: Path) -> bool:
    """A valid result file exists at ``path``."""
    if not path.exists():
        return False
    try:
        load_result(path)
    except ClbenchError:
        return False
    return True


def run_cells(cells: Iterable[Cell], results: str | Path, overrides: list[str] | None = None,
              data_root: str | None = None, resume: bool = True, task_incremental: bool = False,
              download: bool = False, show_progress: bool = True,
              executor: str | Executor = "local", workers: int | None = None,
              address: str | None = None, threads: int | None = None) -> list[Path]:
    """Run every cell not yet done on ``executor`` (see :mod:`clbench.executors`); returns the
    result paths of all cells (done or skipped). Results are written here, one at a time.

    ``executor`` is a registered name (made with ``workers``/``address``/``threads`` and closed
    at the end) or an :class:`~clbench.executors.Executor` the caller made, which is started if
    needed and left open, so several sweeps can share warm workers."""
    if isinstance(executor, str):
        runner, owned = create_executor(executor, workers, address, threads), True
    else:
        runner, owned = executor, False
    planned = plan(cells, list(overrides or []), results, data_root, task_incremental)
    todo = [p for p in planned if not (resume and is_done(p.path))]
    opts = SweepOptions(data_root, task_incremental, download, show_progress)
    try:
        if todo:
            runner.start(todo, opts)  # before any bar is drawn: missing data fails cleanly
        # leave=False: a failing sweep's error line is not mixed with a bar
        with tqdm(total=len(planned), initial=len(planned) - len(todo), desc="runs", unit="run",
                  disable=not show_progress, dynamic_ncols=True, leave=False) as bar:

            def record(p: Planned, result: RunResult) -> Path:
                result.extra["label"] = p.cell.strategy + p.tag
                path = write_result(result, results, p.tag)
                if result.status != "ok":
                    tqdm.write(f"failed: {p.cell} : {str(result.error).splitlines()[0]}")
                bar.set_postfix_str(f"{p.cell.stream} {p.cell.strategy} seed {p.cell.seed}")
                bar.update(1)
                return path

            if todo:
                runner.run(todo, opts, record)
    finally:
        if owned:
            runner.close()
    return [p.path for p in planned]
