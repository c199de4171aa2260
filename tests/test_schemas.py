"""The published JSON Schemas (clbench/schemas): every committed result file and every built-in
suite validates; a file that violates one is refused on load by the real CLI verbs in one
``clbench: error:`` line naming the file, the JSON path and the problem."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

from clbench.cli import main
from clbench.schemas import SCHEMA_DIR, SCHEMAS, schema_path
from clbench.suites import SUITE_DIR, load_suite, suite_names

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "leaderboard" / "results"
#: one committed result file the refusal tests copy and break
SAMPLE = RESULTS / "split-digits" / "mlp" / "replay" / "seed0.json"


def published(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / SCHEMAS[name]).read_text())


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_are_valid_json_schema_and_shipped(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(published(name))
    assert published(name)["additionalProperties"] is False  # the top level is closed
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "schemas/*.json" in project["tool"]["setuptools"]["package-data"]["clbench"]
    assert schema_path(name).parent == ROOT / "clbench" / "schemas"


def test_every_committed_result_file_validates() -> None:
    """Every result file under leaderboard/, against the published file with jsonschema
    directly, not through clbench's wrapper."""
    validator = jsonschema.Draft202012Validator(published("result"))
    files = sorted((ROOT / "leaderboard").rglob("seed*.json"))  # results, repro, tuning, ...
    assert len(files) > 500 and len([f for f in files if RESULTS in f.parents]) > 370
    bad = {str(p): e.message for p in files
           for e in [jsonschema.exceptions.best_match(validator.iter_errors(json.loads(p.read_text())))]
           if e is not None}
    assert not bad


@pytest.mark.parametrize("suite", suite_names())
def test_every_built_in_suite_validates(suite: str) -> None:
    data = yaml.safe_load((SUITE_DIR / f"{suite}.yaml").read_text())
    jsonschema.validate(data, published("suite"), cls=jsonschema.Draft202012Validator)
    assert load_suite(suite).name == suite


def _wrong_type(d: dict[str, Any]) -> None:
    d["config"]["seed"] = "0"


def _missing_key(d: dict[str, Any]) -> None:
    del d["stream"]["fingerprint"]


def _extra_key(d: dict[str, Any]) -> None:
    d["accuracy"] = 0.9


def _metric_entry_extra(d: dict[str, Any]) -> None:
    d["metrics"]["bwt"]["note"] = "edited"


@pytest.mark.parametrize("mutate, where", [
    (_wrong_type, 'at $.config.seed: "0" is a string, should be integer'),
    (_missing_key, "at $.stream: missing key 'fingerprint'"),
    (_extra_key, "at $: unknown result key 'accuracy'"),
    (_metric_entry_extra, "at $.metrics.bwt: unknown key 'note'"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
@pytest.mark.parametrize("verb", ["rank", "check", "leaderboard"])
def test_a_file_violating_the_schema_is_refused_in_one_line(
        verb: str, mutate: Callable[[dict[str, Any]], None], where: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    target = results / SAMPLE.relative_to(RESULTS)
    target.parent.mkdir(parents=True)
    data = json.loads(SAMPLE.read_text())
    mutate(data)
    target.write_text(json.dumps(data))
    argv = {"rank": ["rank", str(results)],
            "check": ["check", str(results), "--baseline",
                      str(ROOT / "leaderboard" / "baselines" / "quick.json")],
            "leaderboard": ["leaderboard", str(results), "--out-dir", str(tmp_path / "board")]}[verb]
    assert main(argv) == 2
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clbench: error: {target}: "), out.err
    assert where in lines[0] and "clbench/schemas/result.schema.json" in lines[0]
    assert not (tmp_path / "board").exists()


def test_a_suite_violating_the_schema_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    text = (SUITE_DIR / "quick.yaml").read_text().replace("seeds: [0, 1, 2]", "seeds: [0, one]")
    path.write_text(text)
    assert main(["run", "--suite", str(path), "--dry-run"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clbench: error: {path}: at $.seeds[1]: ")
    assert '"one" is a string, should be integer' in lines[0]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_verb_prints_the_published_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", name]) == 0
    out = capsys.readouterr().out
    assert out == (SCHEMA_DIR / SCHEMAS[name]).read_text() and json.loads(out) == published(name)


def test_schema_verb_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["schema", "results"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("clbench: error: ") and "'result'" in err[0]


def test_readme_links_the_schema_files() -> None:
    text = (ROOT / "README.md").read_text()
    for name in SCHEMAS.values():
        assert f"](clbench/schemas/{name})" in text


def test_a_cell_that_failed_before_its_stream_was_built_is_written_and_read(tmp_path: Path) -> None:
    """The executors' failed result (stream fingerprint unknown: null) passes the schema."""
    from clbench.results import load_result, write_result
    from clbench.run.executors import failed_result
    from clbench.run.plan import plan
    from clbench.suites import Cell

    (p,) = plan([Cell("split-digits", "mlp", "naive", 0)], [], tmp_path)
    path = write_result(failed_result(p, "the data folder vanished"), tmp_path)
    data = load_result(path)
    assert data["status"] == "failed" and data["stream"]["fingerprint"] is None
