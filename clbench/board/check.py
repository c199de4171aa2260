"""CI regression check: compare a results folder with a stored baseline, cell by cell.

    clbench check results/ --write-baseline leaderboard/baselines/quick.json   # make a baseline
    clbench check results/ --baseline leaderboard/baselines/quick.json         # exit 1 on a regression

    >>> rows = compare(load_baseline("leaderboard/baselines/quick.json"), collect(load_results("r")))
    >>> failing(rows)

A *cell* is (stream, model, strategy label); its seeds are its samples. The baseline
(``clbench.baseline/1``, JSON) keeps, per cell, the stream version, the stream fingerprint of
each seed, the number of failed runs and the per-seed values of :data:`STORED` metrics.

**The test.** For each checked metric, with ``m_b, s_b, n_b`` the baseline's mean, sample
standard deviation and number of seeds, and ``m_r, s_r, n_r`` the same for the results::

    d = m_r - m_b          tol = max(floor, z * sqrt(s_b^2 / n_b + s_r^2 / n_r))

``|d| <= tol`` passes; beyond it the cell is a ``DROP`` (worse, in the metric's direction in
:mod:`clbench.metrics.registry`) or a ``JUMP`` (better: a suspicious jump usually means broken
evaluation, leaked data or a changed stream). Both are two-sided failures.
``sqrt(s_b^2/n_b + s_r^2/n_r)`` is the standard error of the difference of two independent
means (Welch 1947); under pure seed noise ``d / SE`` is close to Student's t with about
``n_b + n_r - 2`` = 4 degrees of freedom for 3 + 3 seeds. The defaults are chosen for that case:

* ``z = 5``: ``P(|t_4| > 5) = 0.0075`` per cell and metric, about 0.18 expected false alarms
  for the quick suite's 24 cells when the seeds differ, fewer where the floor binds. CI reruns
  the baseline's own seeds, where deterministic runs give ``d = 0`` exactly. A broken method
  (the ones the tests plant) moves accuracy by tens of points, far beyond ``tol``.
* ``floor = 0.03`` (3 points of accuracy): three seeds can underestimate the spread badly
  (some cells have a seed spread of 0.01 points), and a change smaller than 3 points is not
  one that three seeds can resolve.

Measured: the quick suite rerun with seeds 3, 4, 5 against ``leaderboard/baselines/quick.json``
(seeds 0, 1, 2) flags 0 of 24 cells on ``final_accuracy`` and 0 of 22 on ``forgetting_max``.
The closest call was ``der`` on split-mnist1d: ``|d| = 0.021``, 9.2 standard errors (its seeds
agree to 0.4 points), inside the floor only; without the floor it would have been a false alarm.
(Remeasured 2026-12-02 against the baseline rebuilt after GDumb's schedule changed:
``clbench run --suite quick --seeds 3,4,5 --threads 1``, then ``clbench check``.)

**Seed by seed.** A mean hides one collapsed seed: with three seeds, one at 0% moves replay's
mean from 0.94 to 0.63 but inflates ``s_r`` so much that ``tol`` grows past 1.5. So every seed
``s`` that the baseline and the results both hold is also compared with itself (paired: a seed
fixes the class order, the initialisation and the shuffling)::

    d_s = r_s - b_s        tol_seed = max(floor, z * sqrt(2) * s_b)

``sqrt(2) * s_b`` is the standard deviation of the difference of two independent draws of the
seed noise, the most a rerun of one seed can honestly move when even its seed changes (a
deterministic rerun gives ``d_s = 0``). It is estimated from the baseline alone: the results'
own spread is what a regression inflates. A seed beyond it is a ``SEED DROP`` or ``SEED JUMP``
line (failing), beside the cell's mean verdict. Results that share no seed with the baseline
(seeds 3-5 against a baseline of 0-2) get the mean test only, and the row says so.

Other outcomes: ``FAILED`` (every run of the cell failed), ``NEW FAILURES`` (more failed runs
than the baseline had), ``STREAM CHANGED`` (a different stream version, or a different
fingerprint for a seed both have: the baseline is stale; rebuild it) fail the check;
``missing`` (a baseline cell with no results) and ``new`` (a cell the baseline lacks) are
reported only; ``n/a`` is a metric undefined in both (joint's forgetting).

Directions come from the registry; the ``higher_is_better`` a baseline records for each metric
(kept for its readers) and the flags of result files must agree with it, or the file is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from clbench.board.rank import strategy_label
from clbench.errors import ClbenchError
from clbench.metrics.registry import METRICS, check_direction
from clbench.results import read_json, write_json_atomic
from clbench.validation import check_option, check_value

BASELINE_SCHEMA = "clbench.baseline/1"
#: metrics whose per-seed values a baseline stores
STORED = ("final_accuracy", "avg_incremental_accuracy", "forgetting_max", "bwt")
DEFAULT_METRICS = ("final_accuracy",)
Z, FLOOR = 5.0, 0.03
FAILING = frozenset({"DROP", "JUMP", "SEED DROP", "SEED JUMP", "FAILED", "NEW FAILURES",
                     "STREAM CHANGED"})
#: the mean verdicts after which single seeds are compared too
_SEEDED = frozenset({"ok", "DROP", "JUMP", "NEW FAILURES"})


@dataclass
class Cell:
    """One (stream, model, strategy) cell: stream identity, failures, per-seed metric values."""

    stream: str
    model: str
    strategy: str
    stream_version: str = ""
    #: seed -> stream fingerprint (it depends on the seed through the class order)
    fingerprints: dict[int, str] = field(default_factory=dict)
    failed: int = 0
    #: metric -> seed -> value (None where the metric is undefined)
    values: dict[str, dict[int, float | None]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.stream, self.model, self.strategy


def collect(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], Cell]:
    """Group validated result dictionaries into cells."""
    multi = len({r["config"]["model"] for r in results}) > 1
    cells: dict[tuple[str, str, str], Cell] = {}
    for r in results:
        c = r["config"]
        key = (c["stream"], c["model"], strategy_label(r, multi))
        cell = cells.setdefault(key, Cell(*key, stream_version=str(r["stream"]["version"])))
        seed = int(c["seed"])
        cell.fingerprints[seed] = str(r["stream"]["fingerprint"])
        if r["status"] != "ok":
            cell.failed += 1
            continue
        for name in STORED:
            m = r["metrics"].get(name)
            if m is not None:
                check_direction(name, m["higher_is_better"], f"result {'/'.join(key)} seed {seed}")
                cell.values.setdefault(name, {})[seed] = m["value"]
    return dict(sorted(cells.items()))


def software(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The distinct clbench commits and torch / Avalanche versions that made ``results``."""
    keys = {"git_commit": "git_commits", "torch": "torch", "avalanche": "avalanche"}
    return {out: sorted({str(r["provenance"].get(k)) for r in results}) for k, out in keys.items()}


def baseline_json(cells: dict[tuple[str, str, str], Cell], source: str,
                  made_with: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The baseline file's content (deterministic: sorted cells and seeds)."""
    out = []
    for cell in cells.values():
        out.append({"stream": cell.stream, "model": cell.model, "strategy": cell.strategy,
                    "stream_version": cell.stream_version,
                    "fingerprints": {str(s): f for s, f in sorted(cell.fingerprints.items())},
                    "failed": cell.failed,
                    "metrics": {name: {"higher_is_better": METRICS.get(name).obj.higher_is_better,
                                       "values": {str(s): v for s, v in sorted(vals.items())}}
                                for name, vals in sorted(cell.values.items())}})
    return {"schema": BASELINE_SCHEMA, "source": source, "made_with": made_with or {},
            "cells": out}


def write_baseline(results: list[dict[str, Any]], path: str | Path, source: str) -> Path:
    """Write the baseline of ``results`` (validated result dictionaries) to ``path``."""
    cells = collect(results)
    if not cells:
        raise ClbenchError(f"{source}: no results to make a baseline from")
    return write_json_atomic(path, baseline_json(cells, source, software(results)))


def load_baseline(path: str | Path) -> dict[tuple[str, str, str], Cell]:
    """Read a baseline file; a missing or malformed file, or a value that no run can have
    (not finite, outside its metric's range, a negative count or seed), raises ClbenchError
    naming the fix."""
    path = Path(path)
    fix = f"make one with 'clbench check RESULTS --write-baseline {path}'"
    data = read_json(path, "baseline", fix, if_missing=fix)
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        raise ClbenchError(f"{path}: not a {BASELINE_SCHEMA} file; {fix}")
    cells = {}
    try:
        for c in data["cells"]:
            cell = _baseline_cell(c, f"{path}: cell {c['stream']}/{c['model']}/{c['strategy']}")
            cells[cell.key] = cell
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ClbenchError(f"{path}: malformed baseline ({type(e).__name__}: {e}); {fix}") from None
    except ClbenchError as e:
        raise ClbenchError(f"{e}; {fix}") from None
    return cells


def _seed(s: str, where: str) -> int:
    seed = int(s)
    if seed < 0:
        raise ClbenchError(f"{where}: seed {seed} is negative")
    return seed


def _baseline_cell(c: dict[str, Any], where: str) -> Cell:
    """One cell of a baseline file, every value checked (:func:`clbench.validation.check_value`)."""
    failed = c["failed"]
    if not isinstance(failed, int) or isinstance(failed, bool) or failed < 0:
        raise ClbenchError(f"{where}: 'failed' is {failed!r}, not a count of runs")
    if not all(isinstance(f, str) for f in c["fingerprints"].values()):
        raise ClbenchError(f"{where}: fingerprints must be strings")
    cell = Cell(str(c["stream"]), str(c["model"]), str(c["strategy"]), str(c["stream_version"]),
                {_seed(s, where): f for s, f in c["fingerprints"].items()}, failed)
    for name, m in c["metrics"].items():
        check_direction(name, m["higher_is_better"], where)
        cell.values[name] = {_seed(s, where): check_value(name, v, where)
                             for s, v in m["values"].items()}
    return cell


def _stats(values: dict[int, float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the defined values."""
    v = np.array([x for x in values.values() if x is not None], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def tolerance(s_b: float, n_b: int, s_r: float, n_r: int, z: float = Z,
              floor: float = FLOOR) -> float:
    """``max(floor, z * sqrt(s_b^2/n_b + s_r^2/n_r))`` (see the module docstring)."""
    return max(floor, z * math.sqrt(s_b ** 2 / n_b + s_r ** 2 / n_r))


@dataclass
class Row:
    """One line of the diff table."""

    stream: str
    model: str
    strategy: str
    metric: str
    status: str
    base: tuple[float, float, int] = (math.nan, math.nan, 0)
    now: tuple[float, float, int] = (math.nan, math.nan, 0)
    tol: float = math.nan
    note: str = ""
    #: the seed of a seed-by-seed line (None for a cell's mean verdict)
    seed: int | None = None

    @property
    def diff(self) -> float:
        return self.now[0] - self.base[0]


def _stream_change(b: Cell, r: Cell) -> str:
    if b.stream_version != r.stream_version:
        return f"stream version {b.stream_version} -> {r.stream_version}"
    for seed in sorted(set(b.fingerprints) & set(r.fingerprints)):
        if b.fingerprints[seed] != r.fingerprints[seed]:
            return f"seed {seed}: data fingerprint differs"
    return ""


def compare_cell(b: Cell, r: Cell | None, metric: str, z: float = Z,
                 floor: float = FLOOR) -> Row:
    """The verdict for one baseline cell and one metric."""
    row = Row(b.stream, b.model, b.strategy, metric, "ok")
    if r is None:
        row.status, row.note = "missing", "no results for this cell"
        return row
    row.base, row.now = _stats(b.values.get(metric, {})), _stats(r.values.get(metric, {}))
    change = _stream_change(b, r)
    if change:
        row.status, row.note = "STREAM CHANGED", change + "; rebuild the baseline"
    elif r.failed and not r.values:
        row.status, row.note = "FAILED", f"all {r.failed} runs failed"
    elif r.failed > b.failed:
        row.status, row.note = "NEW FAILURES", f"{r.failed} failed runs (baseline {b.failed})"
    elif row.base[2] == 0 and row.now[2] == 0:
        row.status = "n/a"
    elif row.base[2] == 0 or row.now[2] == 0:
        row.status, row.note = "JUMP" if row.base[2] == 0 else "DROP", "defined on one side only"
    else:
        row.tol = tolerance(row.base[1], row.base[2], row.now[1], row.now[2], z, floor)
        if not abs(row.diff) <= row.tol:
            row.status = _verdict(row.diff, metric)
    if row.status in _SEEDED:
        row.note = "; ".join(n for n in (row.note, _pairing(b, r, metric)) if n)
    return row


def _verdict(diff: float, metric: str, prefix: str = "") -> str:
    better = (diff > 0) == METRICS.get(metric).obj.higher_is_better
    return prefix + ("JUMP" if better else "DROP")


def _pairing(b: Cell, r: Cell, metric: str) -> str:
    """The note on how a cell's seeds pair up ("" when the results hold every baseline seed)."""
    base, now = b.values.get(metric, {}), r.values.get(metric, {})
    common = set(base) & set(now)
    if not common:
        return "unpaired: no seed in common with the baseline, mean test only"
    absent = sorted(set(base) - set(now))
    return f"baseline seeds without results: {', '.join(map(str, absent))}" if absent else ""


def compare_seeds(b: Cell, r: Cell, metric: str, z: float = Z, floor: float = FLOOR) -> list[Row]:
    """A ``SEED DROP`` / ``SEED JUMP`` line for every seed both hold whose value moved beyond
    ``max(floor, z sqrt(2) s_b)`` (see the module docstring), or is defined on one side only."""
    base, now = b.values.get(metric, {}), r.values.get(metric, {})
    s_b = _stats(base)[1]
    tol = max(floor, z * math.sqrt(2.0) * (0.0 if math.isnan(s_b) else s_b))
    rows = []
    for seed in sorted(set(base) & set(now)):
        x, y = base[seed], now[seed]
        row = Row(b.stream, b.model, b.strategy, metric, "", seed=seed, tol=tol,
                  base=(math.nan if x is None else x, math.nan, int(x is not None)),
                  now=(math.nan if y is None else y, math.nan, int(y is not None)))
        if x is None and y is None:
            continue
        if x is None or y is None:
            row.status = "SEED JUMP" if x is None else "SEED DROP"
            row.note = f"seed {seed}: defined on one side only"
        elif not abs(y - x) <= tol:
            row.status, row.note = _verdict(y - x, metric, "SEED "), f"seed {seed}"
        if row.status:
            rows.append(row)
    return rows


def compare(baseline: dict[tuple[str, str, str], Cell], current: dict[tuple[str, str, str], Cell],
            metrics: tuple[str, ...] = DEFAULT_METRICS, z: float = Z,
            floor: float = FLOOR) -> list[Row]:
    """Every baseline cell x metric (its mean verdict, then a line per seed beyond its own
    tolerance), then the cells only the results have (status ``new``). ``z`` must be a finite
    number > 0 and ``floor`` a finite number >= 0."""
    check_option("--z", z, 0.0, True, "the tolerance in standard errors")
    check_option("--floor", floor, 0.0, False, "the smallest tolerance, in metric units")
    for m in metrics:
        METRICS.get(m)  # an unknown name: did you mean a registered one?
        if m not in STORED:
            raise ClbenchError(f"--metric {m!r}: a baseline stores only {', '.join(STORED)}")
    rows = []
    for k, b in baseline.items():
        for m in metrics:
            rows.append(compare_cell(b, current.get(k), m, z, floor))
            if rows[-1].status in _SEEDED:
                rows += compare_seeds(b, current[k], m, z, floor)
    rows += [Row(*k, metric="-", status="new", note="not in the baseline")
             for k in current if k not in baseline]
    return rows


def failing(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status in FAILING]


def _ms(s: tuple[float, float, int], seed: int | None = None) -> str:
    mean, sd, n = s
    if n == 0:
        return "-"
    return f"{mean:.4f} (seed {seed})" if seed is not None else f"{mean:.4f} ± {sd:.4f} (n={n})"


def render_rows(rows: list[Row]) -> str:
    """The diff table: failures first, then the rest in baseline order."""
    order = sorted(rows, key=lambda r: r.status not in FAILING)
    table = [[r.status, r.stream, r.model, r.strategy, r.metric, _ms(r.base, r.seed),
              _ms(r.now, r.seed),
              "-" if math.isnan(r.diff) else f"{r.diff:+.4f}",
              "-" if math.isnan(r.tol) else f"{r.tol:.4f}", r.note] for r in order]
    headers = ["status", "stream", "model", "strategy", "metric", "baseline mean ± sd",
               "results mean ± sd", "diff", "tolerance", "note"]
    return tabulate(table, headers, tablefmt="github")


def summary(rows: list[Row]) -> str:
    """One line: counts by status and the verdict."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    verdict = "FAIL" if failing(rows) else "OK"
    return f"check: {verdict} ({parts})"
