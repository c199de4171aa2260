"""The plan of a sweep: every cell resolved to a config and the result path it will write.

    >>> planned = plan(load_suite("quick").cells(), overrides=[], results="results")
    >>> todo = [p for p in planned if not is_done(p.path)]

Both the sweep (:mod:`clbench.run.sweep`) and the executors (:mod:`clbench.run.executors`) read
:class:`Planned` values; neither imports the other's module for them. Resolving every cell before
the first run means a typo in any of them fails at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from clbench.errors import ClbenchError
from clbench.results import load_result, params_tag, result_path
from clbench.run.config import RunConfig, resolve_config
from clbench.suites import Cell


@dataclass(frozen=True)
class Planned:
    """One cell with its resolved config, its settings tag and the path of its result."""

    cell: Cell
    config: RunConfig
    tag: str
    path: Path


def plan(cells: Iterable[Cell], overrides: list[str], results: str | Path,
         data_root: str | None = None, task_incremental: bool = False) -> list[Planned]:
    """Resolve every cell (errors surface before anything runs) and where its result goes."""
    if Path(results).exists() and not Path(results).is_dir():
        raise ClbenchError(f"--results {results}: a file, not a folder; give a results folder")
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


def refuse_done_without_checkpoints(planned: Iterable[Planned]) -> None:
    """With ``--keep-checkpoints`` and resume, a finished cell without checkpoints would be
    skipped silently; refuse, naming the first such result and the fix."""
    bare = [p.path for p in planned
            if is_done(p.path) and "checkpoints" not in json.loads(p.path.read_text())]
    if bare:
        more = f" and {len(bare) - 1} more results" if len(bare) > 1 else ""
        raise ClbenchError(f"{bare[0]}{more} finished without checkpoints; add --no-resume to "
                           "re-run with --keep-checkpoints")
