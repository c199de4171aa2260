"""Result files: one JSON per (stream, model, strategy with parameters, seed), written atomically.

    >>> path = write_result(result, "results")
    results/split-digits/mlp/replay+ewc/seed0.json
    >>> load_result(path)        # validated against the schema and clbench.validation's rules

Schema ``clbench.result/1``, published as JSON Schema in ``clbench/schemas/result.schema.json``
(``clbench schema result``); every key required unless marked optional, and no other
top-level key allowed:

* ``schema``: ``"clbench.result/1"``; ``status``: ``"ok"`` or ``"failed"``; ``error``: str|null
* ``config``: the fully resolved :class:`~clbench.run.config.RunConfig` (``RunConfig.to_dict``)
* ``stream``: ``name``, ``version``, ``fingerprint``, ``scenario``, ``n_experiences``,
  ``classes_per_exp``
* ``accuracy_matrix``: ``R[i][j]``, accuracy on experience ``j``'s test set after training
  experience ``i`` (one row for offline methods); fractions in [0, 1]
* ``random_init_accuracy``: accuracy of the untrained model on each experience (for FWT)
* ``metrics``: ``name -> {"value": float|null, "higher_is_better": bool}``
* ``per_experience``: list of ``{"state_bytes", "train_seconds", "eval_seconds"}`` (optional
  keys may be added)
* ``provenance``: ``clbench_version``, ``git_commit`` (null outside a git checkout), ``torch``,
  ``avalanche``, ``timm``, ``python``, ``host``, ``created``, ``seed``, ``determinism``
* optional ``flags``: list of str, signs that the run collapsed (``collapsed:exp<e>``: at chance
  on an experience right after training on it; ``dead:<layer>@exp<e>``: a hook layer whose
  output does not depend on the input); see :mod:`clbench.metrics.flags`
* optional ``checkpoints`` (runs with ``--keep-checkpoints``): ``dir``, ``files`` (each
  ``{"after_experience", "path"}``, relative to the result's folder), ``hook_layers``, and
  ``partial`` where each file holds part of the state (text runs: ``"trained part"``); see
  :mod:`clbench.checkpoints`
* optional ``feature_forgetting`` (added by ``clbench analyze``): ``summary`` (metric -> value),
  ``settings``, ``analysis_dir``; its metrics are also joined into ``metrics``; see
  :mod:`clbench.analyze`
* optional ``feature_forgetting_null`` (the same block for the null model), ``label`` (the row
  label: strategy and parameter tag), and for text streams ``model``, ``general_ppl``,
  ``pretrained_eval_seconds``, ``pretrained_row_reused``, ``prefix``

The path is ``<root>/<stream>/<model>/<strategy>[@<hash>]/seed<k>.json``; ``@<hash>`` (8 hex
digits of the sha256 of the non-default parameters) appears only when parameters differ from
the registry defaults, so default runs have short, predictable names.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.atomic import write_text_atomic
from clbench.checkpoints import CheckpointSet, save_checkpoints
from clbench.errors import ClbenchError
from clbench.names import check_name, name_problem
from clbench.schemas import check as check_schema
from clbench.validation import check_result, refuse_duplicates

SCHEMA = "clbench.result/1"


@dataclass
class RunResult:
    """The outcome of one run; :func:`to_json` gives the schema's dictionary."""

    config: dict[str, Any]
    stream: dict[str, Any]
    accuracy_matrix: list[list[float]]
    random_init_accuracy: list[float]
    metrics: dict[str, dict[str, Any]]
    per_experience: list[dict[str, Any]]
    provenance: dict[str, Any]
    status: str = "ok"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: signs of a broken run (clbench.metrics.flags): "collapsed:exp<e>", "dead:<layer>@exp<e>"
    flags: list[str] = field(default_factory=list)
    #: model states after each experience (``keep_checkpoints``); written by :func:`write_result`
    checkpoints: CheckpointSet | None = None

    def metric(self, name: str) -> float:
        v = self.metrics.get(name, {}).get("value")
        return math.nan if v is None else float(v)

    def to_json(self) -> dict[str, Any]:
        d = {"schema": SCHEMA, "status": self.status, "error": self.error,
             "config": self.config, "stream": self.stream,
             "accuracy_matrix": self.accuracy_matrix,
             "random_init_accuracy": self.random_init_accuracy,
             "metrics": {k: {"value": _finite_or_none(v["value"]),
                             "higher_is_better": bool(v["higher_is_better"])}
                         for k, v in self.metrics.items()},
             "per_experience": self.per_experience, "provenance": self.provenance,
             "flags": list(self.flags)}
        d.update(self.extra)
        return d


def _finite_or_none(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def params_tag(config: dict[str, Any], defaults: dict[str, Any]) -> str:
    """``""`` for default parameters, else ``"@"`` + 8 hex digits identifying the difference."""
    keys = ("train", "strategy_params", "model_params", "task_incremental", "mono")
    diff = {k: config.get(k) for k in keys if config.get(k) != defaults.get(k)}
    if not diff:
        return ""
    blob = json.dumps(diff, sort_keys=True, default=str).encode()
    return "@" + hashlib.sha256(blob).hexdigest()[:8]


def result_path(root: str | Path, config: dict[str, Any], tag: str = "") -> Path:
    """``<root>/<stream>/<model>/<strategy><tag>/seed<k>.json``; every part must be one safe
    path component (:mod:`clbench.names`), so no result lands outside ``root``."""
    for kind in ("stream", "model", "strategy"):
        check_name(kind, config[kind])
    if not _is_int(config["seed"]) or config["seed"] < 0:
        raise ClbenchError(f"seed {config['seed']!r}: seeds are non-negative integers")
    return (Path(root) / config["stream"] / config["model"] / f"{config['strategy']}{tag}"
            / f"seed{config['seed']}.json")


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (:func:`clbench.atomic.write_atomic`): a reader never sees a
    half-written file, even if the process is killed mid-write."""
    text = json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _non_finite(data: Any, where: str) -> list[str]:
    """The paths (``per_experience[0].method.loss``) of the non-finite floats in ``data``,
    each replaced by None in place (JSON has no NaN or infinity)."""
    if isinstance(data, dict):
        items = [(k, f"{where}.{k}" if where else str(k)) for k in data]
    elif isinstance(data, list):
        items = [(i, f"{where}[{i}]") for i in range(len(data))]
    else:
        return []
    found: list[str] = []
    for k, here in items:
        v = data[k]
        if isinstance(v, float) and not math.isfinite(v):
            data[k] = None
            found.append(here)
        else:
            found += _non_finite(v, here)
    return found


def write_result(result: RunResult, root: str | Path, tag: str = "") -> Path:
    """Write ``result`` (and its checkpoints first, if it kept any) under ``root``.

    A non-finite number outside ``metrics`` (where null means "undefined"), e.g. a method's
    NaN loss in ``per_experience``, is written as null and the result recorded as failed,
    naming where it was: the sweep goes on, and the cell is re-run on the next start."""
    data = json.loads(json.dumps(result.to_json(), default=str))  # a copy to clean in place
    rest = {k: v for k, v in data.items() if k != "metrics"}
    bad = _non_finite(rest, "")
    data = {k: data[k] if k == "metrics" else rest[k] for k in data}
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        data["status"] = "failed"
        data["error"] = (f"non-finite value at {', '.join(bad[:3])}{more}"
                         + (f"; {data['error']}" if data.get("error") else ""))
    validate(data, source="result to write")
    path = result_path(root, result.config, tag)
    if result.checkpoints is not None and result.checkpoints.states:
        data["checkpoints"] = save_checkpoints(path, result.checkpoints)
    return write_json_atomic(path, data)


def validate(data: Any, source: str = "result") -> None:
    """Raise ClbenchError naming the first way ``data`` departs from the schema: the published
    JSON Schema (``clbench/schemas/result.schema.json``, :func:`clbench.schemas.check`: keys,
    types, the top level closed), then what it cannot express: safe names, and one matrix
    entry per experience in each row of a successful run."""
    def bad(why: str) -> ClbenchError:
        return ClbenchError(f"{source}: not a valid {SCHEMA} file: {why}")

    check_schema(data, "result", f"{source}: not a valid {SCHEMA} file")
    for key in ("stream", "strategy", "model"):
        if (why := name_problem(data["config"][key])) is not None:
            raise bad(f"config.{key} {data['config'][key]!r} {why}")
    if "label" in data and (why := name_problem(data["label"])) is not None:
        raise bad(f"label {data['label']!r} {why}")
    if data["status"] == "ok":
        T = data["stream"].get("n_experiences")
        if any(len(r) != T for r in data["accuracy_matrix"]):
            raise bad(f"accuracy_matrix rows must each have n_experiences={T} entries")


def read_json(path: str | Path, what: str, if_invalid: str, if_missing: str = "") -> Any:
    """Parse a JSON file; a missing or unparsable file is a one-line ClbenchError naming ``what``
    the file should be and the fix (``if_missing`` / ``if_invalid``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ClbenchError(f"{path}: no such {what} file" + (f"; {if_missing}" if if_missing else "")) from None
    except IsADirectoryError:
        raise ClbenchError(f"{path}: a folder, not a {what} file; move it away") from None
    except OSError as e:
        raise ClbenchError(f"{path}: cannot read it ({e.strerror or e}); check its permissions") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClbenchError(f"{path}: not valid JSON ({e}); {if_invalid}") from None
    except RecursionError:
        raise ClbenchError(f"{path}: JSON nested too deeply to be a {what} file; {if_invalid}") from None


def load_result(path: str | Path) -> dict[str, Any]:
    """Read one result file and validate it: its schema (:func:`validate`), then its
    directions, ranges and agreement with its own accuracy matrix
    (:func:`clbench.validation.check_result`)."""
    path = Path(path)
    data = read_json(path, "result", "delete it and re-run the cell")
    validate(data, source=str(path))
    check_result(data, where=str(path))
    return data


def load_result_files(root: str | Path, strict: bool = True) -> list[tuple[Path, dict[str, Any]]]:
    """(path, data) of every ``seed*.json`` under ``root``, each validated (``strict=False``
    skips bad files). Two files holding one result
    (:func:`clbench.validation.refuse_duplicates`) are an error either way: a copy is never
    counted twice, nor one of them picked silently."""
    root = Path(root)
    if not root.is_dir():
        raise ClbenchError(f"{root}: no such results folder; run 'clbench run --results {root}' first")
    out: list[tuple[Path, dict[str, Any]]] = []
    for p in sorted(root.rglob("seed*.json")):
        try:
            out.append((p, load_result(p)))
        except ClbenchError:
            if strict:
                raise
    refuse_duplicates(out)
    return out


def load_results(root: str | Path, strict: bool = True) -> list[dict[str, Any]]:
    """The data of :func:`load_result_files`."""
    return [data for _, data in load_result_files(root, strict)]
