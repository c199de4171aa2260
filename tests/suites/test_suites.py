"""Suites: the built-in YAML files resolve cell by cell; bad files are one-line user errors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.streams import STREAMS
from clbench.suites import SUITE_DIR, load_suite, suite_names
from clbench.run.sweep import plan

GOOD = """\
name: mini
version: "2"
description: a test suite
streams: [split-digits]
models: [mlp]
strategies: [naive, replay+ewc]
seeds: [0, 1]
overrides: ["epochs=1"]
expected_minutes: 0.5
"""


def _write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_suites_exist() -> None:
    assert {"quick", "cpu-v1"} <= set(suite_names())


@pytest.mark.parametrize("name", suite_names())
def test_builtin_suite_resolves_every_cell(name: str, tmp_path: Path) -> None:
    suite = load_suite(name)
    assert suite.name == name and suite.version and suite.description
    cells = suite.cells()
    per_seed_model = len(suite.streams) * len(suite.strategies) - len(suite.exclude)
    assert len(cells) == per_seed_model * len(suite.models) * len(suite.seeds)
    assert all(s in STREAMS for s in suite.streams)
    planned = plan(cells, suite.overrides, tmp_path)           # resolves every config
    assert len({p.path for p in planned}) == len(cells), "two cells share a result path"
    for p in planned:
        assert (p.config.stream, p.config.model, p.config.strategy, p.config.seed) == \
            (p.cell.stream, p.cell.model, p.cell.strategy, p.cell.seed)
        assert p.config.family == STREAMS.get(p.cell.stream).meta["family"]
    # a built-in suite's name and its file's path load the same suite
    assert load_suite(str(SUITE_DIR / f"{name}.yaml")) == suite


def test_cpu_v2_has_the_scenarios_that_separate_regularisers() -> None:
    """A task-incremental and two domain-incremental Fashion-MNIST streams, 5 seeds; the
    methods that cannot run task-incremental are excluded there, with a reason, and only there."""
    suite = load_suite("cpu-v2")
    scenarios = {STREAMS.get(s).obj.task_incremental or STREAMS.get(s).obj.kind for s in suite.streams}
    assert {True, "permuted", "rotated"} <= scenarios
    assert len(suite.seeds) >= 5
    assert {(x.stream, x.strategy) for x in suite.exclude} == {("split-fmnist-til", "joint"),
                                                               ("split-fmnist-til", "der")}
    assert all(x.reason for x in suite.exclude)
    cells = {(c.stream, c.strategy) for c in suite.cells()}
    assert ("split-fmnist-til", "der") not in cells and ("perm-fmnist", "der") in cells
    assert {c.seed for c in suite.cells(seeds=[7])} == {7}
    assert ("split-fmnist-til", "joint") not in {(c.stream, c.strategy) for c in suite.cells(seeds=[7])}


@pytest.mark.parametrize("entry, fragment", [
    ("[{stream: split-digits, strategy: naive}]", "at $.exclude[0]: missing key 'reason'"),
    ("[{stream: split-digits, strategy: naive, reason: ''}]",
     "at $.exclude[0].reason: must not be an empty string"),
    ("[{stream: perm-fmnist, strategy: naive, reason: r}]", "stream 'perm-fmnist' is not in the suite's streams"),
    ("[{stream: split-digits, strategy: lwf, reason: r}]", "strategy 'lwf' is not in the suite's strategies"),
    ("naive", 'at $.exclude: "naive" is a string, should be array or null'),
    ("[{stream: split-digits, strategy: naive, reason: r, why: x}]",
     "at $.exclude[0]: unknown key 'why'"),
])
def test_bad_exclusions_are_named(entry: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match=re.escape(fragment)):
        load_suite(str(_write(tmp_path, GOOD + f"exclude: {entry}\n")))


def test_suite_file_by_path(tmp_path: Path) -> None:
    suite = load_suite(str(_write(tmp_path, GOOD)))
    assert (suite.name, suite.version, suite.seeds, suite.overrides) == ("mini", "2", [0, 1], ["epochs=1"])
    assert suite.expected_minutes == 0.5
    cells = suite.cells()
    assert [(c.strategy, c.seed) for c in cells] == [
        ("naive", 0), ("replay+ewc", 0), ("naive", 1), ("replay+ewc", 1)]
    assert all(p.tag for p in plan(cells, suite.overrides, tmp_path))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    text = 'name: mini\nversion: "1"\nstreams:\n  - split-digits\n models: [mlp]\n'
    path = _write(tmp_path, text)
    with pytest.raises(ClbenchError, match="malformed YAML") as e:
        load_suite(str(path))
    msg = str(e.value)
    assert str(path) in msg
    m = re.search(r"line (\d+)", msg)
    assert m and int(m.group(1)) == 5, msg            # the badly indented " models:" line


@pytest.mark.parametrize("text", ["name: [unclosed\n", 'name: "x\n', "a: b: c\n"])
def test_other_syntax_errors(text: str, tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match=r"malformed YAML at line \d+"):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("wrong, right", [
    ("seed", "seeds"), ("strategy", "strategies"), ("override", "overrides"), ("stream", "streams"),
])
def test_unknown_key_suggests_the_right_one(wrong: str, right: str, tmp_path: Path) -> None:
    text = GOOD.replace(f"{right}:", f"{wrong}:")
    with pytest.raises(ClbenchError, match=f"unknown suite key '{wrong}'; did you mean '{right}'"):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("seeds", ['[0, "one"]', "[0.5]", "[true]", '"0,1"', "0"])
def test_seeds_must_be_integers(seeds: str, tmp_path: Path) -> None:
    text = GOOD.replace("seeds: [0, 1]", f"seeds: {seeds}")
    with pytest.raises(ClbenchError, match=r"at \$\.seeds(\[\d\])?: .* should be (integer|array)"):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("key", ["streams", "models", "strategies", "seeds"])
def test_empty_list_is_rejected(key: str, tmp_path: Path) -> None:
    text = re.sub(rf"^{key}: .*$", f"{key}: []", GOOD, flags=re.M)
    with pytest.raises(ClbenchError, match=re.escape(f"at $.{key}: must not be empty")):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("key", ["name", "version", "streams", "seeds"])
def test_missing_key_is_named(key: str, tmp_path: Path) -> None:
    text = re.sub(rf"^{key}: .*\n", "", GOOD, flags=re.M)
    with pytest.raises(ClbenchError, match=f"missing key '{key}'"):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("text", ["- naive\n- ewc\n", "just a string\n", "", "42\n"],
                         ids=["list", "string", "empty", "number"])
def test_document_must_be_a_mapping(text: str, tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match="a suite must be a YAML mapping"):
        load_suite(str(_write(tmp_path, text)))


@pytest.mark.parametrize("line, fragment", [
    ("strategies: [naive, 3]", "at $.strategies[1]: 3 is an integer, should be string"),
    ("overrides: epochs=1", 'at $.overrides: "epochs=1" is a string, should be array or null'),
])
def test_wrong_types_are_named(line: str, fragment: str, tmp_path: Path) -> None:
    key = line.split(":")[0]
    text = re.sub(rf"^{key}: .*$", line, GOOD, flags=re.M)
    with pytest.raises(ClbenchError, match=re.escape(fragment)):
        load_suite(str(_write(tmp_path, text)))


def test_suite_with_unknown_names_fails_before_running(tmp_path: Path) -> None:
    """A typo anywhere in a suite fails at planning time, before any cell runs."""
    suite = load_suite(str(_write(tmp_path, GOOD.replace("replay+ewc", "replay+ewk"))))
    with pytest.raises(ClbenchError, match="did you mean 'ewc'"):
        plan(suite.cells(), suite.overrides, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_cli_reports_a_bad_suite_file_in_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, GOOD.replace("seeds:", "seed:"))
    assert main(["run", "--suite", str(path), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("clbench: error: ")
    assert "did you mean 'seeds'" in err[0]
