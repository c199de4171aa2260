"""Ranked tables from a folder of result files.

    >>> tables = rank_results(load_results("results"), metric="final_accuracy")
    >>> print(render(tables, "md"))

Per stream: each strategy's mean over seeds and the half-width of a 95% t-interval
(``t_{0.975, n-1} * s / sqrt(n)``; blank for one seed) for every reported metric, ranked on
``metric`` in the direction its ``higher_is_better`` flag gives (1 = best). Across streams:
each strategy's rank on every stream (ties share the average rank) and the mean of those ranks
over the streams it ran on; strategies are ordered by mean rank, then by the number of streams.
Each stream table also has a ``CI rank`` (:func:`clbench.stats.ci_rank`): one plus the number of
strategies whose 95% interval lies wholly on the better side, so overlapping intervals share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from clbench.errors import ClbenchError
from clbench.registry import unknown_name_message
from clbench.stats import ci_rank

#: columns shown in tables: metric -> (header, scale, unit)
SHOWN: dict[str, tuple[str, float, str]] = {
    "final_accuracy": ("final acc %", 100.0, ""),
    "avg_incremental_accuracy": ("avg inc acc %", 100.0, ""),
    "forgetting_max": ("forgetting (max) %", 100.0, ""),
    "bwt": ("BWT %", 100.0, ""),
    "fwt": ("FWT %", 100.0, ""),
    "state_bytes": ("state MB", 1e-6, ""),
    "train_seconds": ("train s", 1.0, ""),
}


@dataclass
class Tables:
    metric: str
    higher_is_better: bool
    per_stream: dict[str, pd.DataFrame]
    overall: pd.DataFrame
    #: (stream, label) -> number of failed runs (diverged or crashed), shown beside the seeds
    failed: dict[tuple[str, str], int] = field(default_factory=dict)


def strategy_label(result: dict[str, Any], multi_model: bool) -> str:
    """The row name of a result: its strategy (with parameter tag), plus the model when several
    models share a table."""
    c = result["config"]
    label = result.get("label", c["strategy"])
    return f"{label} / {c['model']}" if multi_model else label


def results_frame(results: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per successful result: stream, model, label, seed and every metric value;
    plus metric name -> higher_is_better."""
    rows, direction = [], {}
    multi = len({r["config"]["model"] for r in results}) > 1
    for r in results:
        if r.get("status") != "ok":
            continue
        c = r["config"]
        row = {"stream": c["stream"], "model": c["model"], "label": strategy_label(r, multi),
               "seed": c["seed"]}
        for name, m in r["metrics"].items():
            row[name] = math.nan if m["value"] is None else float(m["value"])
            direction[name] = bool(m["higher_is_better"])
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
    for r in results:
        if r.get("status") == "failed":
            key = (r["config"]["stream"], strategy_label(r, multi_model))
            out[key] = out.get(key, 0) + 1
    return out


def rank_results(results: list[dict[str, Any]], metric: str = "final_accuracy") -> Tables:
    df, direction = results_frame(results)
    if df.empty:
        raise ClbenchError("no successful results to rank; run 'clbench run' first")
    if metric not in direction:
        raise ClbenchError(unknown_name_message("metric", metric, sorted(direction)))
    hib = direction[metric]
    metrics = [m for m in direction if m in df.columns]
    per_stream: dict[str, pd.DataFrame] = {}
    ranks: dict[str, pd.Series] = {}
    for stream, g in df.groupby("stream", sort=True):
        agg = g.groupby("label")[metrics].agg(["mean", ci95])
        agg[("seeds", "n")] = g.groupby("label")["seed"].nunique()
        key = agg[(metric, "mean")]
        agg[("rank", "")] = key.rank(ascending=not hib, method="min")
        agg[("ci_rank", "")] = ci_rank(key, agg[(metric, "ci95")], hib)
        agg = agg.sort_values([("rank", ""), (metric, "mean")], ascending=[True, not hib],
                              na_position="last")  # undefined metric (joint's forgetting) last
        per_stream[str(stream)] = agg
        ranks[str(stream)] = key.rank(ascending=not hib, method="average")
    rank_df = pd.DataFrame(ranks)
    overall = pd.DataFrame({"mean_rank": rank_df.mean(axis=1), "streams": rank_df.count(axis=1)})
    overall = pd.concat([overall, rank_df], axis=1)
    overall = overall.sort_values(["mean_rank", "streams"], ascending=[True, False])
    multi = len({r["config"]["model"] for r in results}) > 1
    return Tables(metric, hib, per_stream, overall, failed_runs(results, multi))


def _fmt(mean: float, ci: float, scale: float) -> str:
    if math.isnan(mean):
        return "-"
    digits = 1 if abs(mean * scale) >= 10 or scale == 100.0 else 3
    s = f"{mean * scale:.{digits}f}"
    return s if math.isnan(ci) else f"{s} ± {ci * scale:.{digits}f}"


def stream_rows(t: pd.DataFrame, metric: str, failed: dict[str, int] | None = None
                ) -> tuple[list[str], list[list[Any]]]:
    cols = list(SHOWN) if metric in SHOWN else [metric, *SHOWN]
    present = [c for c in cols if (c, "mean") in t.columns]
    headers = ["rank", "strategy", "CI rank"] + [SHOWN.get(c, (c,))[0] for c in present] + ["seeds"]
    rows = []
    for label, r in t.iterrows():
        rank, tier = r[("rank", "")], r.get(("ci_rank", ""), math.nan)
        rows.append(["-" if math.isnan(rank) else int(rank), label,
                     "-" if math.isnan(tier) else int(tier)]
                    + [_fmt(r[(c, "mean")], r[(c, "ci95")], SHOWN.get(c, (c, 1.0))[1]) for c in present]
                    + [_seeds(int(r[("seeds", "n")]), (failed or {}).get(str(label), 0))])
    return headers, rows


def _seeds(n: int, failed: int) -> str:
    return f"{n} (+{failed} failed)" if failed else str(n)


def overall_rows(ov: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the across-streams table (mean rank, streams, rank per stream)."""
    headers = ["strategy", "mean rank", "streams"] + [c for c in ov.columns[2:]]
    rows = [[label, f"{r['mean_rank']:.2f}", int(r["streams"])]
            + ["-" if math.isnan(v) else f"{v:g}" for v in r.iloc[2:]] for label, r in ov.iterrows()]
    return headers, rows


def render(tables: Tables, fmt: str = "md") -> str:
    """Markdown (every table, with headings) or CSV (long form, one row per stream x strategy)."""
    arrow = "higher is better" if tables.higher_is_better else "lower is better"
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
    out = [f"Ranked on `{tables.metric}` ({arrow}); mean ± 95% t-interval over seeds. A run "
           "that diverged or crashed is counted as failed and left out of the statistics. "
           "CI rank: 1 + the number of strategies whose interval lies wholly on the better "
           "side; strategies whose intervals overlap share it.\n"]
    for stream, t in tables.per_stream.items():
        failed = {label: n for (st, label), n in tables.failed.items() if st == stream}
        headers, rows = stream_rows(t, tables.metric, failed)
        out.append(f"### {stream}\n\n" + tabulate(rows, headers, tablefmt="github") + "\n")
    headers, rows = overall_rows(tables.overall)
    out.append("### Overall (mean rank across streams)\n\n" + tabulate(rows, headers, tablefmt="github") + "\n")
    return "\n".join(out)
