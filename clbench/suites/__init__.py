"""Named suites: versioned lists of streams x models x strategies x seeds, kept as YAML.

    >>> suite = load_suite("quick")          # or a path: load_suite("my-suite.yaml")
    >>> [c.strategy for c in suite.cells()][:3]
    ['naive', 'joint', 'cumulative']

A suite file has ``name``, ``version``, ``description``, ``streams``, ``models``, ``strategies``,
``seeds`` and optionally ``overrides`` (``key=value`` strings applied to every cell),
``exclude`` (cells left out: mappings ``{stream, strategy, reason}``, e.g. a method that cannot
run a task-incremental stream; the reason is shown where the suite is listed) and
``expected_minutes``. Unknown keys, missing keys and wrong types are errors naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clbench.errors import ClbenchError
from clbench.registry import unknown_name_message

SUITE_DIR = Path(__file__).parent
_LISTS = ("streams", "models", "strategies", "seeds")


@dataclass(frozen=True)
class Cell:
    stream: str
    model: str
    strategy: str
    seed: int


@dataclass(frozen=True)
class Exclusion:
    """Cells of ``stream`` x ``strategy`` that a suite leaves out, and why."""

    stream: str
    strategy: str
    reason: str


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    streams: list[str]
    models: list[str]
    strategies: list[str]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    expected_minutes: float | None = None
    exclude: list[Exclusion] = field(default_factory=list)

    def excluded(self, stream: str, strategy: str) -> bool:
        return any(x.stream == stream and x.strategy == strategy for x in self.exclude)

    def cells(self, seeds: list[int] | None = None, models: list[str] | None = None,
              strategies: list[str] | None = None) -> list[Cell]:
        """Every (stream, model, strategy, seed) but the excluded, grouped by stream and seed
        so a stream is built once per seed; ``seeds``, ``models``, ``strategies`` replace the
        suite's lists (the exclusions still apply)."""
        return [Cell(st, m, a, s) for st in self.streams for s in (seeds or self.seeds)
                for m in (models or self.models) for a in (strategies or self.strategies)
                if not self.excluded(st, a)]


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = SUITE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ClbenchError(unknown_name_message("suite", name_or_path, suite_names())
                               + " (or give the path of a .yaml suite file)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ClbenchError(f"{path}: malformed YAML{at}; fix the file's syntax") from None
    return parse_suite(data, str(path))


def parse_suite(data: Any, source: str) -> Suite:
    if not isinstance(data, dict):
        raise ClbenchError(f"{source}: a suite must be a YAML mapping with keys "
                           f"name, version, streams, models, strategies, seeds")
    allowed = {"name", "version", "description", "overrides", "expected_minutes", "exclude", *_LISTS}
    for k in data:
        if k not in allowed:
            raise ClbenchError(f"{source}: " + unknown_name_message("suite key", str(k), allowed))
    for k in ("name", "version", *_LISTS):
        if k not in data:
            raise ClbenchError(f"{source}: missing key {k!r}")
    for k in _LISTS:
        v = data[k]
        if not isinstance(v, list) or not v:
            raise ClbenchError(f"{source}: {k!r} must be a non-empty list")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"]):
        raise ClbenchError(f"{source}: 'seeds' must be a list of integers")
    for k in ("streams", "models", "strategies"):
        if not all(isinstance(s, str) for s in data[k]):
            raise ClbenchError(f"{source}: {k!r} must be a list of names")
    ov = data.get("overrides") or []
    if not isinstance(ov, list) or not all(isinstance(o, str) for o in ov):
        raise ClbenchError(f"{source}: 'overrides' must be a list of 'key=value' strings")
    return Suite(name=str(data["name"]), version=str(data["version"]),
                 description=str(data.get("description", "")), streams=data["streams"],
                 models=data["models"], strategies=data["strategies"], seeds=data["seeds"],
                 overrides=ov, expected_minutes=data.get("expected_minutes"),
                 exclude=parse_exclude(data.get("exclude") or [], data, source))


def parse_exclude(items: Any, data: dict[str, Any], source: str) -> list[Exclusion]:
    """``exclude`` entries, each a mapping of a listed stream, a listed strategy and a reason."""
    if not isinstance(items, list):
        raise ClbenchError(f"{source}: 'exclude' must be a list of {{stream, strategy, reason}}")
    out = []
    for i, x in enumerate(items):
        if not (isinstance(x, dict) and set(x) == {"stream", "strategy", "reason"}
                and all(isinstance(v, str) and v for v in x.values())):
            raise ClbenchError(f"{source}: exclude[{i}] must be a mapping with exactly the keys "
                               f"stream, strategy and reason (non-empty strings)")
        for key, listed in (("stream", "streams"), ("strategy", "strategies")):
            if x[key] not in data[listed]:
                raise ClbenchError(f"{source}: exclude[{i}]: {key} {x[key]!r} is not in the "
                                   f"suite's {listed}")
        out.append(Exclusion(x["stream"], x["strategy"], x["reason"]))
    return out
