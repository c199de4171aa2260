"""Named suites: versioned lists of streams x models x strategies x seeds, kept as YAML.

    >>> suite = load_suite("quick")          # or a path: load_suite("my-suite.yaml")
    >>> [c.strategy for c in suite.cells()][:3]
    ['naive', 'joint', 'cumulative']

A suite file (JSON Schema: ``clbench/schemas/suite.schema.json``, ``clbench schema suite``) has
``name``, ``version``, ``description``, ``streams``, ``models``, ``strategies``,
``seeds`` and optionally ``overrides`` (``key=value`` strings applied to every cell),
``exclude`` (cells left out: mappings ``{stream, strategy, reason}``, e.g. a method that cannot
run a task-incremental stream; the reason is shown where the suite is listed) and
``expected_minutes``. Unknown keys, missing keys and wrong types are errors naming the key.
A suite file is plain YAML of at most :data:`MAX_BYTES` bytes, UTF-8, without anchors or
aliases (``&a`` / ``*a``: a few hundred bytes of nested aliases expand to gigabytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clbench.errors import ClbenchError
from clbench.names import check_name
from clbench.registry import unknown_name_message
from clbench.schemas import check as check_schema

SUITE_DIR = Path(__file__).parent
_LISTS = ("streams", "models", "strategies", "seeds")
#: the largest suite file read (the built-in ones are under 4 KB)
MAX_BYTES = 1_000_000


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
        data = read_yaml(path)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ClbenchError(f"{path}: malformed YAML{at}; fix the file's syntax") from None
    return parse_suite(data, str(path))


def read_yaml(path: Path) -> Any:
    """``path`` parsed with ``yaml.safe_load``, after refusing (ClbenchError) a file over
    :data:`MAX_BYTES`, one not in UTF-8, and one with an anchor or alias."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ClbenchError(f"{path}: {path.stat().st_size} bytes; a suite file is at most "
                               f"{MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ClbenchError(f"{path}: not UTF-8 text (byte {e.start}); save the suite as UTF-8") from None
    except OSError as e:
        raise ClbenchError(f"{path}: cannot read it ({e.strerror or e})") from None
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise ClbenchError(f"{path}: YAML anchors and aliases (&name, *name) are not "
                               f"allowed in a suite (line {line}); write the values out")
    return yaml.safe_load(text)


def parse_suite(data: Any, source: str) -> Suite:
    """A :class:`Suite` from parsed YAML: checked against ``clbench/schemas/suite.schema.json``
    (:func:`clbench.schemas.check`: keys, types, non-empty lists, seed range), then a safe name
    and exclusions of listed streams and strategies, which a schema cannot express."""
    if not isinstance(data, dict):
        raise ClbenchError(f"{source}: a suite must be a YAML mapping with keys "
                           f"name, version, streams, models, strategies, seeds")
    check_schema(data, "suite", source)
    try:
        check_name("suite", str(data["name"]))
    except ClbenchError as e:
        raise ClbenchError(f"{source}: {e}") from None
    ov = data.get("overrides") or []
    return Suite(name=str(data["name"]), version=str(data["version"]),
                 description=str(data.get("description", "")), streams=data["streams"],
                 models=data["models"], strategies=data["strategies"], seeds=data["seeds"],
                 overrides=ov, expected_minutes=data.get("expected_minutes"),
                 exclude=parse_exclude(data.get("exclude") or [], data, source))


def parse_exclude(items: Any, data: dict[str, Any], source: str) -> list[Exclusion]:
    """``exclude`` entries (their shape checked by the schema), each naming a listed stream and a
    listed strategy."""
    out = []
    for i, x in enumerate(items):
        for key, listed in (("stream", "streams"), ("strategy", "strategies")):
            if x[key] not in data[listed]:
                raise ClbenchError(f"{source}: exclude[{i}]: {key} {x[key]!r} is not in the "
                                   f"suite's {listed}")
        out.append(Exclusion(x["stream"], x["strategy"], x["reason"]))
    return out
