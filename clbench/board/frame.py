"""A results folder as one tidy pandas DataFrame: one row per (run, metric).

    >>> import clbench
    >>> df = clbench.results_frame("leaderboard/results")
    >>> df[df.metric == "final_accuracy"].groupby(["stream", "strategy"]).value.agg(["mean", "std"])

Every file is read through :func:`clbench.results.load_result_files`, the validated loader of
``clbench rank``, ``check`` and ``leaderboard`` (schema, directions, ranges, agreement with the
file's own accuracy matrix, no duplicate runs), so the frame holds exactly the numbers those
verbs would use. A failed run has no metrics and so no rows. (The ranking's own
:func:`clbench.board.rank.results_frame` is the wide frame of loaded results it ranks: one row
per run, registered metrics as columns.)

Columns (:data:`COLUMNS`), in order:

* ``stream``, ``stream_version``, ``model``; ``strategy``: the row label of the board (the
  method with its settings tag, ``naive@096e0ae8`` when its parameters differ from the
  defaults); ``method``: the method alone (``replay+ewc``);
* ``scenario``: ``class-IL``, ``task-IL`` (multi-head, task labels given) or ``domain-IL``;
* ``seed``, ``metric``, ``value`` (float; NaN where the file has null, e.g. forgetting of a
  one-experience run) and ``higher_is_better``;
* the run's settings: ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``threads`` (torch
  threads, from the file's provenance), ``strategy_params`` (the method parameters as canonical
  JSON, e.g. ``{"ewc": {"ewc_lambda": 500.0, ...}}``; ``json.loads`` gives them back);
* ``path``: the file, relative to the folder.

``clbench leaderboard`` writes the same numbers for the board's results as ``<name>-seeds.csv``
(:func:`seeds_csv`): one row per run, one column per registered metric.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from clbench.metrics.registry import METRICS
from clbench.results import load_result_files

COLUMNS: tuple[str, ...] = (
    "stream", "stream_version", "model", "strategy", "method", "scenario", "seed", "metric",
    "value", "higher_is_better", "epochs", "batch_size", "lr", "optimizer", "threads",
    "strategy_params", "path")
#: the columns of a tidy row that belong to one metric (or to the file), not to the run
PER_METRIC = ("metric", "value", "higher_is_better", "path")
#: a stream's ``scenario`` in a result file -> the frame's name for it
SCENARIOS = {"class-il": "class-IL", "task-il": "task-IL", "domain-il": "domain-IL"}


def scenario(data: dict[str, Any]) -> str:
    """``task-IL`` for a task-incremental run, else the stream's scenario (:data:`SCENARIOS`)."""
    if data["config"].get("task_incremental"):
        return "task-IL"
    raw = str(data["stream"].get("scenario", ""))
    return SCENARIOS.get(raw, raw)


def run_rows(data: dict[str, Any], path: str | None = None) -> list[dict[str, Any]]:
    """The rows of one loaded result: one per metric it reports (none if it failed)."""
    if data["status"] != "ok":
        return []
    c, train = data["config"], data["config"].get("train", {})
    run = {"stream": c["stream"], "stream_version": data["stream"].get("version"),
           "model": c["model"], "strategy": data.get("label", c["strategy"]),
           "method": c["strategy"], "scenario": scenario(data), "seed": c["seed"]}
    settings = {"epochs": train.get("epochs"), "batch_size": train.get("batch_size"),
                "lr": train.get("lr"), "optimizer": train.get("optimizer"),
                "threads": data["provenance"].get("determinism", {}).get("torch_num_threads"),
                "strategy_params": json.dumps(c.get("strategy_params", {}), sort_keys=True),
                "path": path}
    return [{**run, "metric": name,
             "value": math.nan if m["value"] is None else float(m["value"]),
             "higher_is_better": bool(m["higher_is_better"]), **settings}
            for name, m in data["metrics"].items()]


def tidy_frame(results: list[dict[str, Any]], paths: list[str] | None = None) -> pd.DataFrame:
    """The tidy frame (:data:`COLUMNS`) of already loaded results; ``path`` from ``paths``."""
    rows = [row for i, r in enumerate(results)
            for row in run_rows(r, paths[i] if paths is not None else None)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def results_frame(folder: str | Path, strict: bool = True) -> pd.DataFrame:
    """Every result under ``folder`` as one tidy DataFrame (module docstring): one row per run
    and metric. ``strict=False`` skips invalid files instead of raising
    :class:`~clbench.errors.ClbenchError`, as ``load_results`` does."""
    loaded = load_result_files(folder, strict)
    return tidy_frame([data for _, data in loaded],
                      [p.relative_to(folder).as_posix() for p, _ in loaded])


def seeds_csv(results: list[dict[str, Any]]) -> str:
    """The board's per-seed CSV: one row per successful run, its :func:`run_rows` columns but
    ``metric`` / ``value`` / ``higher_is_better`` / ``path``, then one column per registered
    metric (registry order; the ranked tables' metrics, whose directions live in
    :mod:`clbench.metrics.registry`), sorted by stream, scenario, strategy, model and seed.
    Wide rather than tidy to keep the committed file small: :func:`results_frame` is the tidy
    form of the same numbers."""
    names = [e.name for e in METRICS]
    runs = []
    for r in results:
        rows = [row for row in run_rows(r) if row["metric"] in names]
        if rows:
            run = {k: v for k, v in rows[0].items() if k not in PER_METRIC}
            runs.append({**run, **{row["metric"]: row["value"] for row in rows}})
    shown = [n for n in names if any(n in run for run in runs)]
    df = pd.DataFrame(runs, columns=[c for c in COLUMNS if c not in PER_METRIC] + shown)
    df = df.sort_values(["stream", "scenario", "strategy", "model", "seed"], kind="stable")
    return df.to_csv(index=False)
