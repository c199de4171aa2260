"""Ranked tables from a folder of result files.

    >>> tables = rank_results(load_results("results"), metric="final_accuracy")
    >>> print(render(tables, "md"))

Per stream: each strategy's mean over seeds and the half-width of a 95% t-interval
(``t_{0.975, n-1} * s / sqrt(n)``; none for one seed) for every reported metric, ranked on
``metric`` in its direction (1 = best; ties share the average rank, in the stream tables as in
the overall one). Across streams: each strategy's rank on every stream and the mean of those
ranks over the streams it ran on; strategies are ordered by mean rank, then by the number of
streams. Each stream table also has a ``CI rank`` (:func:`clbench.board.stats.ci_rank`): the
worst rank the 95% intervals allow, so more uncertainty never improves it.

**Reference rows.** ``joint`` and ``cumulative`` (:data:`REFERENCE`) are upper bounds, not
continual learners: they are shown below each stream's ranked rows without a rank or CI rank,
and left out of the overall table (hence of the Friedman / Nemenyi test and the CD diagram),
unless ``include_reference``. A combined strategy that contains one (``replay+cumulative``) is
a method like any other.

**What is never mixed.** A table holds one stream version (the results' ``stream.version``):
results of one stream at two versions are refused, since their numbers are not comparable.
Task-incremental runs (multi-head, task labels given) of a stream that also has class-IL runs
go to their own table, ``<stream> (task-IL)``.

Feature-forgetting analyses (``clbench analyze``: the ``ff_*`` metrics) of one table and model
are compared only when they were made alike: results whose analyses differ in a setting
(crosscoder k, expansion, steps, lr, batch size; layers, head layer, probe size, held-out share,
checkpoints: :func:`analysis_settings`) are refused, naming the setting.

Directions, headers and display scales come from :mod:`clbench.metrics.registry`, never from
the files: a file whose ``higher_is_better`` flag disagrees with the registry is refused, and
metrics the registry does not know (an outside method's extras) are left out of the tables.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from clbench.board.stats import ci_rank
from clbench.errors import ClbenchError
from clbench.metrics.registry import METRICS, check_direction

#: the metric columns of a table, in order (a table ranked on another metric shows it first;
#: a column no run of the stream has is left out); each column's header and scale are the registry's
SHOWN: tuple[str, ...] = ("final_accuracy", "avg_incremental_accuracy", "forgetting_max", "bwt",
                          "fwt", "general_ppl_ratio", "state_bytes", "train_seconds")

#: strategies that bound what a continual learner can reach (they see every experience's data
#: at once, or keep all of it): shown apart, never ranked (see the module docstring)
REFERENCE: frozenset[str] = frozenset({"joint", "cumulative"})
#: the suffix of a stream's task-incremental table when the stream also has class-IL runs
TASK_IL = " (task-IL)"


@dataclass
class Tables:
    metric: str
    higher_is_better: bool
    per_stream: dict[str, pd.DataFrame]
    overall: pd.DataFrame
    #: (stream, label) -> number of failed runs (diverged or crashed), shown beside the seeds
    failed: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (stream, label) -> number of flagged runs (collapsed, dead layer), shown beside the seeds
    flagged: dict[tuple[str, str], int] = field(default_factory=dict)
    #: stream -> metrics not applicable there (not shown): FWT in class-IL with one head
    not_applicable: dict[str, set[str]] = field(default_factory=dict)
    #: labels of the reference rows (upper bounds) shown apart, unranked
    reference: set[str] = field(default_factory=set)


def strategy_label(result: dict[str, Any], multi_model: bool) -> str:
    """The row name of a result: its strategy (with parameter tag), plus the model when several
    models share a table."""
    c = result["config"]
    label = result.get("label", c["strategy"])
    return f"{label} / {c['model']}" if multi_model else label


def is_reference(result: dict[str, Any]) -> bool:
    """Whether a result is of an upper-bound strategy (:data:`REFERENCE`)."""
    return result["config"]["strategy"] in REFERENCE


def _task_il(result: dict[str, Any]) -> bool:
    return bool(result["config"].get("task_incremental", False))


def table_names(results: list[dict[str, Any]]) -> list[str]:
    """The table each result goes to: its stream's name, with :data:`TASK_IL` appended for a
    task-incremental run of a stream that also has class-IL runs. Results of one stream at
    different ``stream.version`` s are a ClbenchError (their numbers cannot be compared)."""
    kinds: dict[str, set[bool]] = {}
    versions: dict[str, set[str]] = {}
    for r in results:
        name = r["config"]["stream"]
        kinds.setdefault(name, set()).add(_task_il(r))
        version = (r.get("stream") or {}).get("version")
        if version is not None:
            versions.setdefault(name, set()).add(str(version))
    for name, vs in sorted(versions.items()):
        if len(vs) > 1:
            raise ClbenchError(f"results of stream {name!r} at versions {', '.join(sorted(vs))} "
                               "cannot share a table; keep each version's results in its own "
                               "folder and rank the folders separately")
    return [r["config"]["stream"] + (TASK_IL if _task_il(r) and len(kinds[r["config"]["stream"]]) > 1
                                     else "") for r in results]


#: analysis settings that change none of its numbers: where it ran, how much the report shows,
#: and the crosscoder's seed (a draw, like a run's seed), and which block it is
ANALYSIS_FREE: frozenset[str] = frozenset({"device", "top", "images", "null", "crosscoder.seed"})
#: the result blocks ``clbench analyze`` writes (the run's and the null model's)
ANALYSIS_BLOCKS = ("feature_forgetting", "feature_forgetting_null")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def analysis_settings(block: dict[str, Any]) -> dict[str, str]:
    """The settings that define one feature-forgetting analysis block, flat (``crosscoder.k``)
    -> JSON value: its ``settings`` less :data:`ANALYSIS_FREE`, and the checkpoints analyzed."""
    flat = _flat({**(block.get("settings") or {}), "checkpoints": block.get("checkpoints")})
    return {k: json.dumps(v, sort_keys=True) for k, v in sorted(flat.items())
            if k not in ANALYSIS_FREE}


def check_analyses(results: list[dict[str, Any]]) -> None:
    """Refuse (ClbenchError naming the first setting that differs and two results) results of one
    table and model whose feature-forgetting analyses were made with different settings."""
    first: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
    for r, table in zip(results, table_names(results)):
        c = r["config"]
        for key in ANALYSIS_BLOCKS:
            if not isinstance(r.get(key), dict):
                continue
            mine = analysis_settings(r[key])
            where = f"{r.get('label', c['strategy'])} seed {c['seed']}"
            seen = first.setdefault((table, c["model"]), (where, mine))
            diff = [k for k in sorted(set(mine) | set(seen[1])) if mine.get(k) != seen[1].get(k)]
            if diff:
                k = diff[0]
                raise ClbenchError(
                    f"results of stream {table} / {c['model']} hold feature-forgetting analyses "
                    f"made with different settings ({seen[0]}: {k}={seen[1].get(k, 'unset')}; "
                    f"{where}: {k}={mine.get(k, 'unset')}), so their ff_ metrics cannot share a "
                    "table: run clbench analyze on them with the same options, or rank them "
                    "from separate folders")


def results_frame(results: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per successful result: stream (its table, :func:`table_names`), model, label,
    seed, whether it is a reference row, and the value of every registered metric (unregistered ones are left out); plus metric name -> higher_is_better,
    from the registry, for the metrics present (in order of first appearance).

    A result whose ``higher_is_better`` flag for a metric disagrees with the registry is a
    ClbenchError."""
    rows, direction = [], {}
    multi = len({r["config"]["model"] for r in results}) > 1
    for r, table in zip(results, table_names(results)):
        if r.get("status") != "ok":
            continue
        c = r["config"]
        label = strategy_label(r, multi)
        row = {"stream": table, "model": c["model"], "label": label, "seed": c["seed"],
               "reference": is_reference(r)}
        where = f"result {c['stream']}/{c['model']}/{label} seed {c['seed']}"
        for name, m in r["metrics"].items():
            if name not in METRICS:
                continue
            direction[name] = check_direction(name, m["higher_is_better"], where).higher_is_better
            row[name] = math.nan if m["value"] is None else float(m["value"])
        rows.append(row)
    return pd.DataFrame(rows), direction


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95% t-interval of the mean (nan for fewer than 2 values)."""
    v = values[~np.isnan(values)]
    if len(v) < 2:
        return math.nan
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def failed_runs(results: list[dict[str, Any]], multi_model: bool) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r, table in zip(results, table_names(results)):
        if r.get("status") == "failed":
            key = (table, strategy_label(r, multi_model))
            out[key] = out.get(key, 0) + 1
    return out


def flagged_runs(results: list[dict[str, Any]], multi_model: bool) -> dict[tuple[str, str], int]:
    """(stream, label) -> successful runs whose file holds a flag (:mod:`clbench.metrics.flags`)."""
    out: dict[tuple[str, str], int] = {}
    for r, table in zip(results, table_names(results)):
        if r.get("status") == "ok" and r.get("flags"):
            key = (table, strategy_label(r, multi_model))
            out[key] = out.get(key, 0) + 1
    return out


def not_applicable(results: list[dict[str, Any]]) -> dict[str, set[str]]:
    """stream -> metrics that cannot tell methods apart there. FWT in a class-incremental
    stream with one head: the head has never been trained on an unseen experience's classes, so
    ``R[j-1][j] ~ 0`` for every method and FWT ``~ -mean_j b_j`` by construction."""
    single_head_cil: dict[str, bool] = {}
    for r, name in zip(results, table_names(results)):
        if r.get("status") != "ok":
            continue
        cil = r["stream"].get("scenario") == "class-il" and not _task_il(r)
        single_head_cil[name] = single_head_cil.get(name, True) and cil
    return {name: {"fwt"} for name, cil in single_head_cil.items() if cil}


def rank_results(results: list[dict[str, Any]], metric: str = "final_accuracy",
                 include_reference: bool = False) -> Tables:
    """The ranked tables of ``results`` on ``metric`` (see the module docstring); with
    ``include_reference``, joint and cumulative are ranked like the other strategies."""
    check_analyses(results)
    df, direction = results_frame(results)
    if df.empty:
        raise ClbenchError("no successful results to rank; run 'clbench run' first")
    hib = METRICS.get(metric).obj.higher_is_better  # unknown: did you mean a registered one?
    if metric not in direction:
        raise ClbenchError(f"no successful result reports metric {metric!r}; "
                           f"they report {', '.join(sorted(direction))}")
    metrics = [m for m in direction if m in df.columns]
    per_stream: dict[str, pd.DataFrame] = {}
    ranks: dict[str, pd.Series] = {}
    reference: set[str] = set()
    for stream, g in df.groupby("stream", sort=True):
        agg = g.groupby("label")[metrics].agg(["mean", ci95])
        agg[("seeds", "n")] = g.groupby("label")["seed"].nunique()
        ref = g.groupby("label")["reference"].all() & (not include_reference)
        agg[("reference", "")] = ref
        reference |= {str(x) for x in ref.index[ref]}
        key, half = agg[(metric, "mean")][~ref], agg[(metric, "ci95")][~ref]
        agg[("rank", "")] = key.rank(ascending=not hib, method="average")
        agg[("ci_rank", "")] = ci_rank(key, half, hib)
        # ranked rows first, then the reference rows; an undefined metric (joint's forgetting) last
        agg = agg.sort_values([("reference", ""), ("rank", ""), (metric, "mean")],
                              ascending=[True, True, not hib], na_position="last")
        per_stream[str(stream)] = agg
        ranks[str(stream)] = agg[("rank", "")][~agg[("reference", "")]]
    rank_df = pd.DataFrame(ranks)
    overall = pd.DataFrame({"mean_rank": rank_df.mean(axis=1), "streams": rank_df.count(axis=1)})
    overall = pd.concat([overall, rank_df], axis=1)
    overall = overall.sort_values(["mean_rank", "streams"], ascending=[True, False])
    multi = len({r["config"]["model"] for r in results}) > 1
    return Tables(metric, hib, per_stream, overall, failed_runs(results, multi),
                  flagged_runs(results, multi), not_applicable(results), reference)


def _fmt(mean: float, ci: float, scale: float) -> str:
    if math.isnan(mean):
        return "-"
    digits = 1 if abs(mean * scale) >= 10 or scale == 100.0 else 3
    s = f"{mean * scale:.{digits}f}"
    return s if math.isnan(ci) else f"{s} ± {ci * scale:.{digits}f}"


def stream_rows(tables: Tables, stream: str) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of one stream's table: the :data:`SHOWN` columns (``metric`` first if
    it is not one of them; none that is not applicable on the stream) under their registry
    headers, values times their registry scales; failed and flagged runs beside the seeds."""
    t, metric = tables.per_stream[stream], tables.metric
    skip = tables.not_applicable.get(stream, set()) - {metric}
    failed = {label: n for (st, label), n in tables.failed.items() if st == stream}
    flagged = {label: n for (st, label), n in tables.flagged.items() if st == stream}
    cols = list(SHOWN) if metric in SHOWN else [metric, *SHOWN]
    shown = [METRICS.get(c).obj for c in cols if (c, "mean") in t.columns and c not in skip
             and bool(t[(c, "mean")].notna().any())]   # e.g. general_ppl_ratio: text streams only
    headers = ["rank", "strategy", "CI rank"] + [m.header for m in shown] + ["seeds"]
    rows = []
    for label, r in t.iterrows():
        rank, tier = r[("rank", "")], r.get(("ci_rank", ""), math.nan)
        ref = bool(r.get(("reference", ""), False))
        rows.append(["-" if math.isnan(rank) else f"{rank:g}",
                     f"{label} (reference)" if ref else label,
                     "-" if math.isnan(tier) else int(tier)]
                    + [_fmt(r[(m.name, "mean")], r[(m.name, "ci95")], m.scale) for m in shown]
                    + [_seeds(int(r[("seeds", "n")]), failed.get(str(label), 0),
                              flagged.get(str(label), 0))])
    return headers, rows


def _seeds(n: int, failed: int, flagged: int = 0) -> str:
    notes = ([f"+{failed} failed"] if failed else []) + ([f"{flagged} flagged"] if flagged else [])
    return f"{n} ({', '.join(notes)})" if notes else str(n)


def stream_note(tables: Tables, stream: str) -> str:
    """The line under a stream's table naming what is not shown there and why ("" if none)."""
    skip = tables.not_applicable.get(stream, set()) - {tables.metric}
    if "fwt" in skip:
        return ("FWT is not shown: in a class-incremental stream with one head it is fixed by "
                "construction (R[j-1][j] ~ 0 for every method, so FWT ~ -mean b).")
    return ""


#: what the tables say about failed and flagged runs (Markdown and the page)
RUNS_NOTE = ("A run that diverged or crashed is counted as failed and left out of the statistics. "
             "A flagged run (at chance on an experience right after training on it, or a hook "
             "layer whose output no longer depends on the input; clbench.metrics.flags) stays "
             "in the statistics and is counted beside the seeds.")


#: the rule of the CI rank column, in one line (Markdown and the page)
CI_RANK_NOTE = ("CI rank: the worst rank the 95% intervals allow, 1 + the number of other "
                "strategies whose interval is not wholly on the worse side (a one-seed row has "
                "no interval, so it may be anywhere); more uncertainty never improves it.")


def reference_note(tables: Tables) -> str:
    """The sentence saying which rows are shown apart ("" if none)."""
    if not tables.reference:
        return ""
    return (f"Reference rows ({', '.join(sorted(tables.reference))}: upper bounds that see all "
            "the data, not continual learners) are shown below each stream's ranked rows without "
            "a rank, and left out of the overall table and the Friedman / Nemenyi test "
            "(--include-reference ranks them).")


def overall_rows(ov: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the across-streams table (mean rank, streams, rank per stream)."""
    headers = ["strategy", "mean rank", "streams"] + [c for c in ov.columns[2:]]
    rows = [[label, f"{r['mean_rank']:.2f}", int(r["streams"])]
            + ["-" if math.isnan(v) else f"{v:g}" for v in r.iloc[2:]] for label, r in ov.iterrows()]
    return headers, rows


def render(tables: Tables, fmt: str = "md") -> str:
    """Markdown (every table, with headings) or CSV (long form, one row per stream x strategy)."""
    arrow = METRICS.get(tables.metric).obj.arrow
    if fmt == "csv":
        frames = []
        for stream, t in tables.per_stream.items():
            flat = t.copy()
            flat.columns = [f"{a}_{b}" if b else a for a, b in flat.columns]
            flat.insert(0, "stream", stream)
            frames.append(flat.reset_index().rename(columns={"label": "strategy"}))
        return pd.concat(frames).to_csv(index=False, float_format="%.6g")
    if fmt != "md":
        raise ClbenchError(f"unknown format {fmt!r}; use md or csv")
    ref = reference_note(tables)
    out = [f"Ranked on `{tables.metric}` ({arrow}); mean ± 95% t-interval over seeds. "
           f"{RUNS_NOTE} {CI_RANK_NOTE}" + (f" {ref}" if ref else "") + "\n"]
    for stream in tables.per_stream:
        headers, rows = stream_rows(tables, stream)
        note = stream_note(tables, stream)
        out.append(f"### {stream}\n\n" + tabulate(rows, headers, tablefmt="github") + "\n"
                   + (f"\n{note}\n" if note else ""))
    headers, rows = overall_rows(tables.overall)
    out.append("### Overall (mean rank across streams)\n\n" + tabulate(rows, headers, tablefmt="github") + "\n")
    return "\n".join(out)
