"""The plan of a sweep: every cell resolved to a config and the result path it will write.

    >>> from clbench.suites import load_suite
    >>> planned = plan(load_suite("quick").cells(), overrides=[], results="results")
    >>> todo = [p for p in planned if not is_done(p.path)]
    >>> len(todo), str(todo[0].path)
    (72, 'results/split-digits/mlp/naive/seed0.json')

A method's override (``--set ewc.ewc_lambda=500``) applies to the cells whose strategy contains
that method (``ewc``, ``replay+ewc``) and leaves the others (``naive``) alone; it is an error only
when no cell has the method:

    >>> [p.config.strategy_params for p in plan([Cell("split-digits", "mlp", "naive", 0),
    ...     Cell("split-digits", "mlp", "ewc", 0)], ["ewc.ewc_lambda=500"], "results")]
    [{'naive': {}}, {'ewc': {'ewc_lambda': 500.0}}]

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
from clbench.run.config import RunConfig, resolve_config, split_override
from clbench.strategy_api import STRATEGIES
from clbench.suites import Cell


@dataclass(frozen=True)
class Planned:
    """One cell with its resolved config, its settings tag and the path of its result."""

    cell: Cell
    config: RunConfig
    tag: str
    path: Path


def method_of(item: str) -> str | None:
    """The registered method an override ``<method>.<param>=value`` is scoped to, else None."""
    key = split_override(item)[0]
    name = key.split(".", 1)[0] if "." in key else None
    return name if name is not None and name in STRATEGIES else None


def overrides_for(strategy: str, overrides: Iterable[str]) -> list[str]:
    """``overrides`` less those scoped to a method that ``strategy`` (e.g. ``replay+ewc``) lacks."""
    methods = set(strategy.split("+"))
    return [o for o in overrides if method_of(o) in (None, *methods)]


def plan(cells: Iterable[Cell], overrides: list[str], results: str | Path,
         data_root: str | None = None, task_incremental: bool = False) -> list[Planned]:
    """Resolve every cell (errors surface before anything runs) and where its result goes.

    A method-scoped override reaches only the cells with that method; one that reaches no cell
    is a :class:`ClbenchError`. A cell given twice (``--seeds 0,0``, a strategy or stream
    listed twice) is refused: one result is one run, and a second copy would only narrow the
    interval."""
    if Path(results).exists() and not Path(results).is_dir():
        raise ClbenchError(f"--results {results}: a file, not a folder; give a results folder")
    cells = list(cells)
    present = {m for c in cells for m in c.strategy.split("+")}
    for o in overrides:
        m = method_of(o)
        if m is not None and m not in present:
            have = ", ".join(sorted({c.strategy for c in cells}))
            raise ClbenchError(f"--set {o}: no cell runs method {m!r} (strategies: {have}); "
                               f"add {m!r} to --strategy or drop the override")
    out: dict[Path, Planned] = {}
    extra = ["task_incremental=true"] if task_incremental else []
    for c in cells:
        cfg = resolve_config(c.stream, c.strategy, c.model, c.seed,
                             [*overrides_for(c.strategy, overrides), *extra], data_root)
        default = resolve_config(c.stream, c.strategy, c.model, c.seed).to_dict()
        tag = params_tag(cfg.to_dict(), default)
        path = result_path(results, cfg.to_dict(), tag)
        if path in out:
            raise ClbenchError(f"cell {c.stream}/{c.model}/{c.strategy} seed {c.seed} is given "
                               "twice (a seed, strategy, model or stream listed twice); give "
                               "each once")
        out[path] = Planned(c, cfg, tag, path)
    return list(out.values())


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
