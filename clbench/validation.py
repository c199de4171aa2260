"""What a loaded result must satisfy before it counts in a table, a check or a submission.

    >>> check_value("bwt", -0.25, where="seed0.json")
    -0.25
    >>> check_value("final_accuracy", 5.0, where="seed0.json")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: seed0.json: metric 'final_accuracy' is 5, outside its range [0, 1]; ...
    >>> check_option("--floor", float("nan"), 0.0, False, "metric units")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: --floor nan: must be a finite number >= 0 (metric units)

    check_result(data, where)            # directions, ranges, consistency with its own matrix
    refuse_duplicates(paths_and_data)    # one file per (stream, model, label, settings, seed)

:func:`clbench.results.validate` checks a file's shape (keys and types, against the published
JSON Schema ``clbench/schemas/result.schema.json``); this module checks what a schema cannot
express, its meaning, so that ``rank``, ``check``, ``leaderboard`` and ``submit`` (which all load through
:func:`clbench.results.load_result` / :func:`~clbench.results.load_results`) never rank, compare or
publish numbers a run cannot have produced. Each failure is a :class:`ClbenchError` naming the
file, the metric and the fix.

1. **Direction.** A registered metric's ``higher_is_better`` in a file must be the registry's
   (:func:`clbench.metrics.registry.check_direction`): one edited file cannot turn a board.
2. **Range.** Every metric value is ``null`` (undefined) or a finite number; a registered
   metric's value lies in its registered :class:`~clbench.metrics.registry.Range`. The accuracy
   matrix and the untrained accuracies ``b`` are fractions in ``[0, 1]``, ``b`` one per
   experience.
3. **Consistency.** Every metric that can be recomputed from the file's own records is, and
   must agree with the reported value within ``|a - b| <= ATOL + RTOL |b|``
   (:func:`recomputed`): the ``cl`` metrics from ``R`` and ``b``
   (:func:`clbench.metrics.cl.cl_metrics`), ``state_bytes`` (max) and ``train_seconds`` /
   ``eval_seconds`` / ``mono_seconds`` (sums) from ``per_experience``, the prose perplexities
   from ``general_ppl`` and ``tokens_per_second`` from the tokens trained. A metric the records
   leave undefined (``nan``: forgetting of a one-row matrix) must be ``null``, and one they
   define must be reported: a seed cannot drop out of a mean while still counted. A successful
   run that reports metrics reports every recomputable one.
4. **One result per run.** A result's identity is :func:`result_key`: (stream, model, row label,
   training / method / model settings, seed). Two files with one identity (a copy under another
   name or folder, a symlink, the same seed run twice) are refused by :func:`refuse_duplicates`,
   naming both: a copy is not evidence, and it would narrow the interval.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from clbench.errors import ClbenchError
from clbench.metrics.cl import cl_metrics
from clbench.metrics.registry import METRICS, Range, check_direction

#: tolerance of the consistency check: stored values are written from the same sums, so any
#: difference beyond rounding means the file was edited
ATOL, RTOL = 1e-6, 1e-9
#: the config keys that, with stream, model, label and seed, identify a result (what
#: :func:`clbench.results.params_tag` hashes)
SETTINGS = ("train", "strategy_params", "model_params", "task_incremental", "mono")
#: per-experience sums reported as metrics (key in ``per_experience`` = metric name)
_SUMS = ("train_seconds", "eval_seconds", "mono_seconds")
#: every metric :func:`recomputed` can give: reporting one without its record is refused
RECOMPUTABLE = ("final_accuracy", "avg_incremental_accuracy", "forgetting_max",
                "forgetting_first", "bwt", "fwt", "state_bytes", *_SUMS, "tokens_per_second",
                "general_ppl_before", "general_ppl_after", "general_ppl_ratio")
_FIX = "the file was edited or is corrupt: delete it and re-run the cell"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(name: str, value: Any, where: str) -> float | None:
    """``value`` as a float (None if null) after checking it is a finite number in the
    registered range of metric ``name`` (any finite number for an unregistered one)."""
    if value is None:
        return None
    if not _number(value):
        raise ClbenchError(f"{where}: metric {name!r} has value {value!r}, not a number; {_FIX}")
    v = float(value)
    values = METRICS.get(name).obj.range if name in METRICS else Range()
    if v not in values:
        what = "not finite" if not math.isfinite(v) else f"outside its range {values}"
        raise ClbenchError(f"{where}: metric {name!r} is {v:g}, {what}; {_FIX}")
    return v


def check_option(flag: str, value: float, low: float, open_low: bool, meaning: str) -> float:
    """A numeric command-line option: finite and ``> low`` (``open_low``) or ``>= low``."""
    if value not in Range(low, open_low=open_low):
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise ClbenchError(f"{flag} {value:g}: must be a finite number {bound} ({meaning})")
    return value


def _fractions(values: Any, what: str, where: str) -> None:
    if not isinstance(values, list) or not all(_number(v) and 0.0 <= v <= 1.0 for v in values):
        raise ClbenchError(f"{where}: {what} must be numbers in [0, 1]; {_FIX}")


def recomputed(data: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """metric -> (value, source) for every metric the file's own records determine (``nan``
    where they leave it undefined); the source names the record, for error messages."""
    R, b = data["accuracy_matrix"], data["random_init_accuracy"]
    out = {k: (v, "accuracy matrix") for k, v in cl_metrics(R, b).items()}
    per = data["per_experience"]
    if per and all(isinstance(p, dict) for p in per):
        if all(_number(p.get("state_bytes")) for p in per):
            out["state_bytes"] = (float(max(p["state_bytes"] for p in per)), "per-experience record")
        for key in _SUMS:  # mono_seconds only where the monosemanticity block ran
            if (key != "mono_seconds" or key in data["metrics"]) and all(
                    _number(p.get(key, 0.0)) for p in per):
                out[key] = (float(sum(p.get(key, 0.0) for p in per)), "per-experience record")
        tokens = [p.get("train_tokens") for p in per]
        if "train_seconds" in out and all(_number(t) for t in tokens):
            out["tokens_per_second"] = (sum(tokens) / max(out["train_seconds"][0], 1e-9),
                                        "per-experience record")
    ppl = data.get("general_ppl")
    if isinstance(ppl, list) and ppl and all(_number(p) and p > 0 for p in ppl):
        out["general_ppl_before"] = (float(ppl[0]), "general_ppl record")
        out["general_ppl_after"] = (float(ppl[-1]), "general_ppl record")
        out["general_ppl_ratio"] = (ppl[-1] / ppl[0], "general_ppl record")
    return out


def check_consistency(data: dict[str, Any], where: str) -> None:
    """Rule 3 of the module docstring, for a successful run."""
    metrics = data["metrics"]
    if not metrics:
        return  # scored nothing (a text run without scoring): nothing to disagree with
    again = recomputed(data)
    for name in RECOMPUTABLE:
        if name in metrics and name not in again:
            raise ClbenchError(f"{where}: metric {name!r} is reported, but the record it is "
                               f"computed from is missing or not numeric; {_FIX}")
    for name, (want, source) in again.items():
        if name not in metrics:
            raise ClbenchError(f"{where}: metric {name!r} is missing, though the file's own {source} "
                               f"defines it; {_FIX}")
        got = metrics[name]["value"]
        if math.isnan(want):
            if got is not None:
                raise ClbenchError(f"{where}: metric {name!r} is {got:g}, but the file's own {source} "
                                   f"leaves it undefined (null); {_FIX}")
        elif got is None or abs(got - want) > ATOL + RTOL * abs(want):
            shown = "null" if got is None else f"{got:.6g}"
            raise ClbenchError(f"{where}: metric {name!r} is {shown}, but the file's own {source} "
                               f"gives {want:.6g}; {_FIX}")


def check_result(data: dict[str, Any], where: str) -> None:
    """Rules 1-3 for one result already checked against the schema."""
    # the seed's type and sign are checked with the schema (clbench.results.validate)
    for name, m in data["metrics"].items():
        if name in METRICS:
            check_direction(name, m["higher_is_better"], where)
        check_value(name, m["value"], where)
    if data["status"] != "ok":
        return
    T = data["stream"].get("n_experiences")
    b = data["random_init_accuracy"]
    _fractions(b, "random_init_accuracy entries", where)
    if len(b) != T:
        raise ClbenchError(f"{where}: random_init_accuracy has {len(b)} entries, "
                           f"n_experiences is {T}; {_FIX}")
    check_consistency(data, where)


def result_key(data: dict[str, Any]) -> tuple[str, str, str, str, int]:
    """(stream, model, row label, settings as canonical JSON, seed): one result per key."""
    c = data["config"]
    settings = json.dumps({k: c.get(k) for k in SETTINGS}, sort_keys=True, default=str)
    return (str(c["stream"]), str(c["model"]), str(data.get("label", c["strategy"])), settings,
            int(c["seed"]))


def refuse_duplicates(loaded: Iterable[tuple[Path, dict[str, Any]]]) -> None:
    """Rule 4: a ClbenchError naming the first two files that hold the same result."""
    seen: dict[tuple[str, str, str, str, int], Path] = {}
    for path, data in loaded:
        key = result_key(data)
        if key not in seen:
            seen[key] = path
            continue
        first = seen[key]
        link = (" (one is a link to the other)"
                if Path(first).resolve() == Path(path).resolve() else "")
        stream, model, label, _, seed = key
        raise ClbenchError(f"{first} and {path} hold the same result ({stream}/{model}/{label} "
                           f"seed {seed}){link}; one run counts once: delete one of them or move "
                           "it out of the results folder")
