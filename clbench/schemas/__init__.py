"""The published JSON Schemas of clbench's files, and validation against them.

    >>> sorted(SCHEMAS)
    ['result', 'suite']
    >>> check({"schema": "clbench.result/1"}, "result", "seed0.json")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: seed0.json: at $: missing key 'status' (clbench/schemas/result.schema.json)
    >>> check({"name": "x", "version": "1", "streams": ["a"], "models": ["m"],
    ...        "strategies": ["s"], "seeds": [0], "seed": [1]}, "suite", "my.yaml")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: my.yaml: at $: unknown suite key 'seed'; did you mean 'seeds'? (clbench/schemas/suite.schema.json)

``result.schema.json`` (``clbench.result/1``, a result file) and ``suite.schema.json`` (a suite
file, the YAML checked as the JSON it parses to) are JSON Schema (draft 2020-12) files shipped
with the package; ``clbench schema result|suite`` prints one. Both close their top level: an
unknown top-level key is refused (with the nearest known key), so a typo or a block this
version does not know never passes silently; the objects clbench passes through from elsewhere
(a result's ``config``, ``provenance``, per-experience records) stay open.

:func:`check` raises one :class:`ClbenchError` for the most relevant violation (an unknown key
first, else :func:`jsonschema.exceptions.best_match`): the file, the JSON path (``$.config.seed``), the
problem, and the schema file. What a schema cannot express (safe names, row lengths equal to
``n_experiences``, metric directions and ranges, agreement with the accuracy matrix) is
checked after it by :func:`clbench.results.validate`, :mod:`clbench.validation` and
:func:`clbench.suites.parse_suite`.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from clbench.errors import ClbenchError
from clbench.registry import unknown_name_message

SCHEMA_DIR = Path(__file__).parent
#: schema name -> its file in this folder
SCHEMAS = {"result": "result.schema.json", "suite": "suite.schema.json"}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


def schema_path(name: str) -> Path:
    """The file of schema ``name`` (``result`` or ``suite``)."""
    if name not in SCHEMAS:
        raise ClbenchError(unknown_name_message("schema", name, SCHEMAS))
    return SCHEMA_DIR / SCHEMAS[name]


def schema_text(name: str) -> str:
    """Schema ``name`` as published (the file's text)."""
    return schema_path(name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_text(name)))


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def problem(error: ValidationError, name: str) -> str:
    """One line saying what is wrong where ``error`` points (the instance abridged)."""
    v, inst = error.validator, error.instance
    if v == "required":
        missing = [k for k in error.validator_value if k not in inst]
        return f"missing key {missing[0]!r}"
    if v == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = [k for k in inst if k not in known]
        kind = f"{name} key" if not error.absolute_path else "key"
        return unknown_name_message(kind, str(extra[0]), known)
    if v == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{_short(inst)} is {_kind(inst)}, should be {want}"
    if v == "const":
        return f"is {_short(inst)}, expected {_short(error.validator_value)}"
    if v == "enum":
        return f"is {_short(inst)}, not one of {', '.join(_short(x) for x in error.validator_value)}"
    if v == "minItems" and error.validator_value == 1:
        return "must not be empty"
    if v in ("minimum", "maximum"):
        side = ">=" if v == "minimum" else "<="
        return f"is {_short(inst)}, must be {side} {error.validator_value}"
    if v == "minLength" and error.validator_value == 1:
        return "must not be an empty string"
    return error.message.replace("\n", " ")[:200]


def check(data: Any, name: str, source: str) -> None:
    """Raise ClbenchError (one line: ``source``, JSON path, problem, schema file) if ``data``
    violates schema ``name``."""
    errors = list(validator(name).iter_errors(data))
    if not errors:
        return
    # an unknown key first (it is usually a typo that also explains a missing key), the
    # outermost one; otherwise the library's most relevant error
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    error = (min(unknown, key=lambda e: len(e.absolute_path)) if unknown
             else best_match(errors))
    assert error is not None
    what = error.schema.get("description") if error.validator in ("type", "minItems") else None
    hint = f"; {what}" if what and error.absolute_path and len(what) <= 120 else ""
    raise ClbenchError(f"{source}: at {error.json_path}: {problem(error, name)}{hint} "
                       f"(clbench/schemas/{SCHEMAS[name]})")
