"""The leaderboard folder: ranked tables, statistics, figures and the HTML page from results.

    clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1   # writes into leaderboard/

    >>> paths = build_leaderboard("leaderboard/results", "leaderboard", name="cpu-v1", suite="cpu-v1")

With ``suite``, only the results of the suite's cells count (its streams, models and seeds; any
strategy, so a submitted method is ranked beside the suite's): one results folder can hold
several suites, and a suite's board does not change while another suite's runs are added.

Writes, into ``out_dir`` (all of these files or none, nothing else touched):

* ``clbench-leaderboard.json``: the marker of a leaderboard folder (its name and suite).
  clbench writes only into a folder that holds one, or into a new or empty folder (which it
  marks), so a mistyped ``--out-dir`` (or the default, the results folder's parent) never
  overwrites a project's own README.md; ``--init`` marks an existing folder on purpose;

* ``README.md``: the ranked tables of :mod:`clbench.board.rank` (per stream with CI rank, and the
  mean rank across streams), the Friedman / Nemenyi result of :mod:`clbench.board.stats` and the
  figures;
* ``<name>.csv``: the same numbers in long form (every metric's mean and 95% half-width);
* ``<name>-seeds.csv``: the per-seed values behind those means: one row per run (stream,
  strategy, seed, settings), one column per registered metric
  (:func:`clbench.board.frame.seeds_csv`; :func:`clbench.results_frame` gives them tidy);
* ``forgetting.md``: the tables ranked on ``forgetting_max`` (lower is better) instead;
* ``cd-diagram.png``: the critical-difference diagram of the mean ranks;
* ``pareto-state.png`` and ``pareto-time.png``: final accuracy against the state a strategy
  keeps (MB) and against its run time (train + eval seconds), one panel per stream, Pareto
  front marked (:mod:`clbench.board.plots`);
* ``index.html``: the sortable page (:mod:`clbench.board.page`).

Every file is first written into a staging folder inside ``out_dir`` and then renamed into
place, so a rebuild that fails (a figure that cannot be drawn, a full disk) leaves the old
files as they were. The output depends only on the result files and the arguments (no timestamps, no absolute
paths): regenerating from the same results gives the same bytes, which a test checks for the
committed leaderboard.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from clbench.atomic import write_text_atomic
from clbench.errors import ClbenchError
from clbench.board.frame import seeds_csv
from clbench.names import check_name
from clbench.board.page import Image, Page, render_page
from clbench.board.protocol import (check_suite_matches, method_protocol, protocol_md, runs_line,
                                   stream_protocol, suite_record)
from clbench.board.plots import ParetoPanel, cd_diagram, pareto_figure
from clbench.board.rank import Tables, rank_results, render, results_frame
from clbench.board.stats import RankTest, friedman_nemenyi, significant_pairs, summary_line
from clbench.metrics.registry import METRICS
from clbench.results import load_results
from clbench.suites import Suite, load_suite, suite_names

CD_PNG, STATE_PNG, TIME_PNG = "cd-diagram.png", "pareto-state.png", "pareto-time.png"
FORGETTING_MD = "forgetting.md"
#: the file that marks a folder as a clbench leaderboard (see the module docstring)
MARKER = "clbench-leaderboard.json"
MARKER_SCHEMA = "clbench.leaderboard/1"
STAGING_PREFIX = ".clbench-staging-"
#: the y axis of the Pareto views
PARETO_VALUE = "final_accuracy"


def means_matrix(tables: Tables) -> pd.DataFrame:
    """Ranked strategies x streams: the mean of the ranked metric (nan where a strategy did not
    run); the reference rows (:data:`clbench.board.rank.REFERENCE`) are not in it unless they
    were ranked."""
    cols = {s: t[(tables.metric, "mean")][~t[("reference", "")]]
            for s, t in tables.per_stream.items()}
    return pd.DataFrame(cols).sort_index()


def _mean(t: pd.DataFrame, metric: str) -> pd.Series:
    key = (metric, "mean")
    return t[key] if key in t.columns else pd.Series(math.nan, index=t.index)


def time_spread(results: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(table, row label) -> the least and the most train + eval seconds of one run over its
    seeds (successful runs; rows and tables as :func:`clbench.board.rank.results_frame` names them)."""
    df, _ = results_frame(results)
    if df.empty or "train_seconds" not in df or "eval_seconds" not in df:
        return {}
    secs = (df["train_seconds"] + df["eval_seconds"]).groupby([df["stream"], df["label"]])
    return {(str(k[0]), str(k[1])): (float(lo), float(hi))
            for k, lo, hi in zip(secs.min().index, secs.min(), secs.max())}


def pareto_panels(tables: Tables, cost: str, results: list[dict[str, Any]] | None = None
                  ) -> list[ParetoPanel]:
    """One panel per stream of final accuracy (%) against ``cost``: ``"state"`` (state MB) or
    ``"time"`` (mean train + eval seconds; with ``results``, each point also carries its
    min-max over seeds, :func:`time_spread`); values in the registry's display scales."""
    spread = time_spread(results) if results is not None and cost == "time" else None
    panels = []
    for stream, t in tables.per_stream.items():
        value = METRICS.get(PARETO_VALUE).obj.display(_mean(t, PARETO_VALUE))
        labels = [str(i) for i in t.index]
        if cost == "state":
            x = METRICS.get("state_bytes").obj.display(_mean(t, "state_bytes"))
        else:
            x = _mean(t, "train_seconds") + _mean(t, "eval_seconds")
        lo = hi = None
        if spread is not None:
            nan = (math.nan, math.nan)
            lo = [spread.get((stream, label), nan)[0] for label in labels]
            hi = [spread.get((stream, label), nan)[1] for label in labels]
        panels.append(ParetoPanel(stream, labels, x.tolist(), value.tolist(), lo, hi))
    return panels




def readme_text(title: str, command: str, tables: Tables, test: RankTest, csv_name: str,
                results: list[dict[str, Any]] | None = None) -> str:
    """The leaderboard's README.md; with ``results``, the protocol they record
    (:mod:`clbench.board.protocol`)."""
    lines = [f"# {title}", "",
             f"Generated by `{command}`. Sortable tables: [index.html](index.html); "
             f"all metrics: [{csv_name}]({csv_name}); ranked on forgetting: "
             f"[{FORGETTING_MD}]({FORGETTING_MD}).", "",
             render(tables, "md"),
             "### Are the differences significant? (Friedman test, Nemenyi post-hoc)", "",
             summary_line(test)]
    if tables.reference:
        lines += ["", f"Left out of the test (reference rows, upper bounds): "
                      f"{', '.join(sorted(tables.reference))}."]
    if test.dropped:
        lines += ["", f"Left out of the test (not run on every stream): {', '.join(test.dropped)}."]
    if test.cd is not None:
        pairs = significant_pairs(test)
        shown = "; ".join(f"{a} > {b}" for a, b in pairs) if pairs else "none"
        lines += ["", f"Pairs that differ (mean ranks further apart than CD): {shown}."]
    if test.cliques:
        lines += ["", "Groups whose mean ranks lie within CD of each other (not shown to differ):", ""]
        lines += [f"* {', '.join(g)}" for g in test.cliques]
    lines += ["", f"![critical-difference diagram]({CD_PNG})", "",
              "### Accuracy against memory and time", "",
              "Red points are on the Pareto front: no other strategy is both cheaper and more "
              "accurate on that stream.", "",
              f"![final accuracy vs state MB]({STATE_PNG})", "",
              f"![final accuracy vs train + eval seconds]({TIME_PNG})", ""]
    if results:
        lines += [runs_line(results), "", protocol_md(results)]
    return "\n".join(lines)


def in_suite(results: list[dict], suite: "str | Suite | None") -> list[dict]:
    """The results of ``suite``'s cells (stream, model and seed in the suite; any strategy);
    all of them when ``suite`` is None."""
    if suite is None:
        return results
    s = load_suite(suite) if isinstance(suite, str) else suite
    keep = {(st, m, seed) for st in s.streams for m in s.models for seed in s.seeds}
    return [r for r in results
            if (r["config"]["stream"], r["config"]["model"], r["config"]["seed"]) in keep]


def command_line(results: str | Path, name: str, metric: str = "final_accuracy",
                 title: str | None = None, suite: "str | Suite | None" = None,
                 include_reference: bool = False) -> str:
    """The ``clbench leaderboard`` command that writes these outputs (the output folder, which
    defaults to the results folder's parent, is left out so the text does not depend on it)."""
    parts = ["clbench", "leaderboard", str(results), "--name", name]
    if suite is not None:
        parts += ["--suite", suite if isinstance(suite, str) else suite.name]
    if metric != "final_accuracy":
        parts += ["--metric", metric]
    if title:
        parts += ["--title", shlex.quote(title)]
    if include_reference:
        parts.append("--include-reference")
    return " ".join(parts)


def marker_json(name: str, suite: str | None, record: dict[str, Any] | None = None) -> str:
    """The marker's text; ``record`` (:func:`clbench.board.protocol.suite_record`) is the suite's
    cells and resolved settings, which a submission must match."""
    data: dict[str, Any] = {"schema": MARKER_SCHEMA, "name": name, "suite": suite}
    if record is not None:
        data["suite_record"] = record
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def recorded_suite(out: Path) -> dict[str, Any] | None:
    """The suite record of board folder ``out``: its marker's; for a marker written before
    suites were recorded, the built-in suite of its name's; None for a new folder or a board
    without a suite (ClbenchError for an old marker of a suite that is not built in)."""
    marker = read_marker(out)
    if marker is None or marker.get("suite") is None:
        return None
    if isinstance(marker.get("suite_record"), dict):
        return marker["suite_record"]
    if marker["suite"] not in suite_names():
        raise ClbenchError(f"{out / MARKER} records no definition of suite {marker['suite']!r}; "
                           f"rebuild the board once with 'clbench leaderboard RESULTS --name "
                           f"{marker.get('name')} --suite <its suite file> --out-dir {out}' to "
                           "record it")
    return suite_record(load_suite(marker["suite"]))


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of leaderboard folder ``out``, None if it has none (ClbenchError if bad)."""
    path = out / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ClbenchError(f"{path}: unreadable leaderboard marker ({e}); delete it and "
                           "rebuild with --init") from None
    if not (isinstance(data, dict) and data.get("schema") == MARKER_SCHEMA):
        raise ClbenchError(f"{path}: not a {MARKER_SCHEMA} marker; delete it and rebuild with --init")
    return data


def check_out_dir(out: Path, name: str, suite: str | None, results: str | Path | None = None,
                  init: bool = False) -> None:
    """Refuse (ClbenchError, naming the fix) to write board ``name`` into ``out`` unless it is
    that board's marked folder, a new folder, an empty one (but for the ``results`` folder
    being ranked), or ``init`` marks it on purpose."""
    if out.exists() and not out.is_dir():
        raise ClbenchError(f"{out}: a file, not a folder; give a leaderboard folder with --out-dir")
    marker = read_marker(out)
    if marker is None:
        own = Path(results).resolve() if results is not None else None
        if out.is_dir() and any(p.resolve() != own for p in out.iterdir()) and not init:
            raise ClbenchError(f"{out} is not empty and not a clbench leaderboard (it has no "
                               f"{MARKER}): writing there could overwrite its README.md; give a "
                               "new or empty folder with --out-dir, or add --init to make this "
                               "one a leaderboard")
        return
    if (marker.get("name"), marker.get("suite")) != (name, suite):
        raise ClbenchError(f"{out} is the leaderboard {marker.get('name')!r} (suite "
                           f"{marker.get('suite')}), not {name!r} (suite {suite}); give its own "
                           "folder with --out-dir")


def _publish(out: Path, build: Any) -> list[Path]:
    """Run ``build(staging) -> [files]`` in a staging folder inside ``out``, then move every
    file into ``out``; if ``build`` fails, ``out`` is left as it was."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{STAGING_PREFIX}*"):  # a killed rebuild's; ours are renamed away
        shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        staged = build(staging)
        paths = []
        for f in staged:
            os.replace(f, out / f.name)
            paths.append(out / f.name)
        return paths
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_leaderboard(results: str | Path, out_dir: str | Path, name: str,
                      metric: str = "final_accuracy", title: str | None = None,
                      command: str | None = None, suite: "str | Suite | None" = None,
                      init: bool = False, include_reference: bool = False) -> list[Path]:
    """Write every leaderboard file for the results under ``results`` (those of ``suite``'s
    cells only, when given) into ``out_dir``, a leaderboard folder (see :func:`check_out_dir`;
    ``init`` marks a non-empty folder as one); ``include_reference`` ranks joint and cumulative
    (and lets them into the test) instead of showing them apart."""
    out = Path(out_dir)
    check_name("leaderboard", name)
    s = load_suite(suite) if isinstance(suite, str) else suite
    suite_name = None if s is None else s.name  # a suite file's own name, not its path
    check_out_dir(out, name, suite_name, results, init)
    loaded = in_suite(load_results(results), s)
    versions = {r["config"]["stream"]: str(r["stream"]["version"]) for r in loaded}
    record = suite_record(s, versions) if s is not None else None
    old = (read_marker(out) or {}).get("suite_record")
    if record is not None and isinstance(old, dict) and not init:
        check_suite_matches(old, s, suite_name or "", fix=f"{out} records another suite "
                            "under this name: give its own folder with --out-dir, or add --init "
                            "to record this one")
    command = command or command_line(results, name, metric, title, suite, include_reference)
    title = title or f"clbench leaderboard: {name}"
    if not loaded:
        raise ClbenchError(f"no results of suite {suite_name!r} under {results}; run it first: "
                           f"clbench run --suite {suite_name} --results {results}")
    tables = rank_results(loaded, metric, include_reference)
    test = friedman_nemenyi(means_matrix(tables), tables.higher_is_better)
    csv_name = f"{name}.csv"

    def build(stage: Path) -> list[Path]:
        paths = [write_text_atomic(stage / MARKER, marker_json(name, suite_name, record)),
                 write_text_atomic(stage / "README.md",
                                   readme_text(title, command, tables, test, csv_name, loaded)),
                 write_text_atomic(stage / csv_name, render(tables, "csv")),
                 write_text_atomic(stage / f"{name}-seeds.csv", seeds_csv(loaded)),
                 write_text_atomic(stage / FORGETTING_MD,
                                   f"# {title}, ranked on forgetting\n\nGenerated by `{command}`.\n\n"
                                   + render(rank_results(loaded, "forgetting_max", include_reference), "md")),
                 cd_diagram(test, stage / CD_PNG, tables.metric),
                 pareto_figure(pareto_panels(tables, "state"), "state kept between experiences (MB)",
                               "final accuracy %", stage / STATE_PNG,
                               "Final accuracy vs memory (red: Pareto front)"),
                 pareto_figure(pareto_panels(tables, "time", loaded),
                               "train + eval seconds (bars: min-max over seeds)",
                               "final accuracy %", stage / TIME_PNG,
                               "Final accuracy vs run time (red: Pareto front)")]
        page = Page(title, command, tables, test,
                    figures=[Image(CD_PNG, "Critical-difference diagram of the mean ranks"),
                             Image(STATE_PNG, "Final accuracy vs state kept between experiences"),
                             Image(TIME_PNG, "Final accuracy vs train + eval time")],
                    links=[(csv_name, f"all metrics ({csv_name})"),
                           (FORGETTING_MD, "ranked on forgetting"), ("README.md", "README.md")],
                    runs_note=runs_line(loaded),
                    protocol=[("Streams and training", *stream_protocol(loaded)),
                              ("Methods' parameters as run (source) and descriptions",
                               *method_protocol(loaded))])
        paths.append(write_text_atomic(stage / "index.html", render_page(page)))
        return paths

    return _publish(out, build)
