"""A sweep: many cells (stream, model, strategy, seed) run in turn, each written atomically.

    >>> paths = run_cells(load_suite("quick").cells(), results="results")

Every cell's config is resolved before the first run, so a typo in any of them fails at once.
A cell whose valid result already exists is skipped (``resume=True``), so a sweep stopped at
any point — even by SIGKILL — finishes on the next start with every cell done once. A stream
is built once per (stream, seed) and shared by the cells that use it.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from clbench.config import RunConfig, resolve_config
from clbench.errors import ClbenchError
from clbench.results import load_result, params_tag, result_path, write_result
from clbench.runner import run
from clbench.streams import Stream, build_stream
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


def _run_one(p: Planned, stream: Stream, results: str | Path, show_progress: bool) -> None:
    """Run one planned cell on a built stream and write its result atomically."""
    exp_bar = tqdm(total=stream.n_experiences, desc="  experiences", leave=False,
                   disable=not show_progress, dynamic_ncols=True)

    def progress(i: int, n: int) -> None:
        exp_bar.total = n
        exp_bar.update(i - exp_bar.n)

    try:
        result = run(p.config, stream=stream, progress=progress)
    finally:
        exp_bar.close()
        gc.collect()  # Avalanche objects form cycles; free the run's tensors before the next
    result.extra["label"] = p.cell.strategy + p.tag
    write_result(result, results, p.tag)
    if result.status != "ok":
        tqdm.write(f"failed: {p.cell} : {str(result.error).splitlines()[0]}")


def run_cells(cells: Iterable[Cell], results: str | Path, overrides: list[str] | None = None,
              data_root: str | None = None, resume: bool = True, task_incremental: bool = False,
              download: bool = False, show_progress: bool = True) -> list[Path]:
    """Run every cell not yet done; returns the result paths of all cells (done or skipped)."""
    planned = plan(cells, list(overrides or []), results, data_root, task_incremental)
    todo = [p for p in planned if not (resume and is_done(p.path))]
    cache: dict[tuple[str, int], Stream] = {}

    def stream_for(cell: Cell) -> Stream:
        """The cell's stream, built once per (stream, seed); one stream in memory at a time."""
        key = (cell.stream, cell.seed)
        if key not in cache:
            cache.clear()
            cache[key] = build_stream(cell.stream, seed=cell.seed, data_root=data_root,
                                      task_incremental=task_incremental, download=download)
        return cache[key]

    if todo:  # load the first stream before any bar is drawn: missing data fails cleanly
        stream_for(todo[0].cell)
    bar = tqdm(total=len(planned), initial=len(planned) - len(todo), desc="runs", unit="run",
               disable=not show_progress, dynamic_ncols=True, leave=False)
    try:
        for p in todo:
            stream = stream_for(p.cell)
            bar.set_postfix_str(f"{p.cell.stream} {p.cell.strategy} seed {p.cell.seed}")
            _run_one(p, stream, results, show_progress)
            bar.update(1)
    finally:
        bar.close()  # leave=False: a failing sweep's error line is not mixed with a bar
    return [p.path for p in planned]
