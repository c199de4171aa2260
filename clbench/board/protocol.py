"""A board's protocol: the suite it was built for (recorded in its marker) and the settings its
results were run with (stated on its page).

    >>> import dataclasses
    >>> from clbench.suites import load_suite
    >>> record = suite_record(load_suite("quick"))         # written into clbench-leaderboard.json
    >>> want = record["settings"]["split-digits/mlp"]
    >>> want["train"]["epochs"], want["task_incremental"]
    (10, False)
    >>> settings_difference({**want, "train": {**want["train"], "epochs": 1}}, want)
    "epochs 1 differs from the suite's 10"
    >>> smaller = dataclasses.replace(load_suite("quick"), seeds=[0, 1])
    >>> check_suite_matches(record, smaller, "small.yaml")
    Traceback (most recent call last):
    ...
    clbench.errors.ClbenchError: stream split-digits seed 2 (model mlp) missing from suite small.yaml: ...

``protocol_md(load_results("leaderboard/results"))`` is the README's protocol section.

**The record.** A board built with ``--suite`` records in its marker the suite's cells
(streams x models x seeds, the exclusions) and, per (stream, model), the settings every run of
it resolves to (:func:`stream_settings`: the training block, model options, monosemanticity
block, scenario and stream version, from :func:`clbench.run.config.resolve_config` with the
suite's overrides). These do not depend on the strategy, so a new method's runs must have
exactly them: a submission (:mod:`clbench.board.submit`) whose suite leaves out a (stream, seed)
or resolves any setting differently, or whose files were made with other settings, is refused
naming the first difference (``epochs 1 differs from the suite's 5``).

**The page's protocol.** Read from the result files, never written by hand: per stream the
model, training settings, scenario, stream version and data fingerprints; the clbench versions
and thread counts of the runs; per method, its parameters as run and where each value comes
from (the strategy registry's default, its stream-family default, or an override), with the
registry's description of the method (which cites its paper).
"""
from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from clbench.errors import ClbenchError
from clbench.run.config import resolve_config
from clbench.run.plan import overrides_for
from clbench.streams import STREAMS
from clbench.strategy_api import STRATEGIES
from clbench.suites import Suite

#: the settings of a run that a board fixes, in the order differences are named
SETTINGS = ("model", "stream_version", "task_incremental", "train", "model_params", "mono")


def stream_settings(stream: str, model: str, overrides: list[str]) -> dict[str, Any]:
    """What every run of (``stream``, ``model``) resolves to under ``overrides``, whatever its
    strategy (method-scoped overrides change only the method's parameters)."""
    c = resolve_config(stream, "naive", model, 0, overrides_for("naive", overrides)).to_dict()
    return {"model": model, "stream_version": str(STREAMS.get(stream).obj.version),
            "task_incremental": c["task_incremental"], "train": c["train"],
            "model_params": c["model_params"], "mono": c["mono"]}


def result_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The same settings, as one result file records them."""
    c = data["config"]
    return {"model": c["model"], "stream_version": str(data["stream"]["version"]),
            "task_incremental": bool(c.get("task_incremental", False)), "train": c["train"],
            "model_params": c["model_params"], "mono": c.get("mono")}


def _key(stream: str, model: str) -> str:
    return f"{stream}/{model}"


def suite_record(s: Suite, versions: dict[str, str] | None = None) -> dict[str, Any]:
    """The suite as a board's marker records it (plain JSON values); ``versions`` (stream ->
    the version its results record, e.g. a text stream's data revision) replace the
    registered streams' versions."""
    return {"name": s.name, "version": s.version, "streams": list(s.streams),
            "models": list(s.models), "seeds": [int(x) for x in s.seeds],
            "overrides": list(s.overrides),
            "exclude": [{"stream": x.stream, "strategy": x.strategy} for x in s.exclude],
            "settings": {_key(st, m): {**stream_settings(st, m, list(s.overrides)),
                                       **({"stream_version": versions[st]}
                                          if versions and st in versions else {})}
                         for st in s.streams for m in s.models}}


def _word(key: str, value: Any) -> str:
    if key == "task_incremental":
        return "task-IL" if value else "class-IL"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def settings_difference(got: dict[str, Any], want: dict[str, Any],
                        keys: tuple[str, ...] = SETTINGS) -> str | None:
    """The first setting of ``got`` that is not ``want``'s, as ``"epochs 1 differs from the
    suite's 5"`` (training keys bare, the others prefixed: ``model.hidden``, ``mono.when``,
    ``scenario``, ``stream version``); None if they agree."""
    names = {"train": "", "model_params": "model.", "mono": "mono.",
             "task_incremental": "scenario", "stream_version": "stream version", "model": "model"}
    for key in keys:
        g, w = got.get(key), want.get(key)
        if json.dumps(g, sort_keys=True) == json.dumps(w, sort_keys=True):
            continue
        if isinstance(w, dict) and isinstance(g, dict):
            gl, wl = _leaves(g), _leaves(w)
            for leaf in [*wl, *(k for k in gl if k not in wl)]:
                if json.dumps(gl.get(leaf)) != json.dumps(wl.get(leaf)):
                    return (f"{names[key]}{leaf} {_word(leaf, gl.get(leaf, 'unset'))} differs "
                            f"from the suite's {_word(leaf, wl.get(leaf, 'unset'))}")
        return f"{names[key]} {_word(key, g)} differs from the suite's {_word(key, w)}"
    return None


def cells_of(record: dict[str, Any]) -> set[tuple[str, str, int]]:
    """(stream, model, seed) of every cell the recorded suite runs."""
    return {(st, m, int(seed)) for st in record["streams"] for m in record["models"]
            for seed in record["seeds"]}


def check_suite_matches(record: dict[str, Any], s: Suite, source: str = "", fix: str = "") -> None:
    """Refuse (ClbenchError naming the first difference and ``fix``) a suite ``s`` that does not
    run every (stream, model, seed) of the board's recorded suite with its settings, or that
    runs cells the board's does not."""
    where = source or s.name
    fix = fix or (f"submit with the board's suite {record['name']} unchanged (its "
                  "clbench-leaderboard.json records it)")
    mine = {(st, m, int(seed)) for st in s.streams for m in s.models for seed in s.seeds}
    board = cells_of(record)
    if missing := sorted(board - mine):
        st, m, seed = missing[0]
        raise ClbenchError(f"stream {st} seed {seed} (model {m}) missing from suite {where}: "
                           f"the board's suite {record['name']} has streams "
                           f"{', '.join(record['streams'])} x seeds "
                           f"{', '.join(map(str, record['seeds']))}; {fix}")
    if extra := sorted(mine - board):
        st, m, seed = extra[0]
        raise ClbenchError(f"stream {st} seed {seed} (model {m}) of suite {where} is not in the "
                           f"board's suite {record['name']}; {fix}")
    for st in s.streams:
        for m in s.models:
            want = record["settings"].get(_key(st, m))
            # a suite file sets no stream version: the results' is checked file by file
            diff = want and settings_difference(stream_settings(st, m, list(s.overrides)), want,
                                                tuple(k for k in SETTINGS if k != "stream_version"))
            if diff:
                raise ClbenchError(f"stream {st}: {diff} (suite {where} against the board's "
                                   f"suite {record['name']}); {fix}")


# --- what the page states --------------------------------------------------------------------

def _distinct(values: list[Any]) -> str:
    shown = sorted({_word("", v) if not isinstance(v, bool) else str(v) for v in values})
    return ", ".join(shown) if shown else "-"


def _scenario(r: dict[str, Any]) -> str:
    if r["config"].get("task_incremental"):
        return "task-IL (multi-head, task labels given)"
    return str(r["stream"].get("scenario", "?"))


def stream_protocol(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per (stream, model, scenario) of the settings its runs recorded."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        c = r["config"]
        groups.setdefault((c["stream"], c["model"], _scenario(r)), []).append(r)
    headers = ["stream", "model", "model options", "scenario", "epochs", "batch", "optimizer",
               "lr", "momentum", "weight decay", "stream version",
               "fingerprints (seed: sha256[:12])"]
    rows = []
    for (stream, model, scenario), rs in sorted(groups.items()):
        t = [r["config"]["train"] for r in rs]
        fps = sorted({(int(r["config"]["seed"]), str(r["stream"]["fingerprint"])[:12]) for r in rs})
        opts = _distinct([", ".join(f"{k}={_word('', v)}" for k, v in
                                    sorted(r["config"]["model_params"].items())) for r in rs])
        rows.append([stream, model, opts, scenario]
                    + [_distinct([x.get(k) for x in t]) for k in
                       ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay")]
                    + [_distinct([str(r["stream"]["version"]) for r in rs]),
                       "; ".join(f"{s}: {f}" for s, f in fps)])
    return headers, rows


def _source(method: str, key: str, value: Any, family: str) -> str:
    if method not in STRATEGIES:
        return "not registered here"
    spec = STRATEGIES.get(method).obj
    fam = spec.family_defaults.get(family, {})
    if key in fam and fam[key] == value:
        return f"registry {family}-family default"
    if key in spec.defaults and spec.defaults[key] == value:
        return "registry default"
    return "override"


def method_protocol(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per (method, stream family, parameters as run): each parameter with
    the source of its value, and the registry's description of the method."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for r in results:
        c = r["config"]
        for method, params in sorted((c.get("strategy_params") or {}).items()):
            by_source: dict[str, list[str]] = {}
            for k, v in sorted(params.items()):
                by_source.setdefault(_source(method, k, v, c["family"]), []).append(
                    f"{k}={_word('', v)}")
            shown = "; ".join(f"{src}: {', '.join(kv)}" for src, kv in sorted(by_source.items())
                              ) or "none"
            seen.setdefault((method, c["family"], shown), []).append(c["stream"])
    rows = []
    for (method, family, shown), streams in sorted(seen.items()):
        desc = STRATEGIES.get(method).description if method in STRATEGIES else "-"
        rows.append([method, family, ", ".join(sorted(set(streams))), shown, desc])
    headers = ["method", "stream family", "streams", "parameters as run, by source", "description"]
    return headers, rows


def runs_line(results: list[dict[str, Any]]) -> str:
    """One line on the software and the conditions the runs were measured under."""
    prov = [r.get("provenance") or {} for r in results]
    versions = _distinct([p.get("clbench_version", "?") for p in prov])
    threads = _distinct([(p.get("determinism") or {}).get("torch_num_threads", "?") for p in prov])
    loads = [p["load_average"] for p in prov if "load_average" in p]
    load = (f"; 1-minute load average at the start of the runs {min(loads):.2f} to "
            f"{max(loads):.2f}" if loads else
            "; the result files record no machine load, so other work on the machine is unknown")
    return (f"Runs made with clbench {versions}. Times are the wall-clock seconds each run "
            f"measured, under whatever load its machine had: {threads} torch thread(s) per run"
            f"{load}. Bars in the time plot: min to max over seeds.")


def protocol_md(results: list[dict[str, Any]]) -> str:
    """The protocol section of a board's README.md (see the module docstring)."""
    def md(table: tuple[list[str], list[list[str]]]) -> str:
        return tabulate(table[1], table[0], tablefmt="github", disable_numparse=True)

    return "\n".join(["### Protocol (read from the result files)", "",
                      md(stream_protocol(results)), "",
                      "Methods' parameters as run, the source of each value and the strategy "
                      "registry's description:", "", md(method_protocol(results)), ""])
