"""Result files: atomic writes, schema validation, tolerant loading, predictable paths."""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from clbench import resolve_config, run
from clbench.errors import ClbenchError
from clbench.results import (
    SCHEMA,
    RunResult,
    load_result,
    load_results,
    params_tag,
    result_path,
    validate,
    write_result,
)
from clbench.streams import Stream


@pytest.fixture(scope="module")
def real_result(digits_stream: Stream) -> RunResult:
    """A real run (naive, 1 epoch) whose result every test here writes or mutates."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_cli._one_thread: 2 threads on 2 busy cores crawl
    try:
        r = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1"]), stream=digits_stream)
    finally:
        torch.set_num_threads(before)
    assert r.status == "ok", r.error
    return r


@pytest.fixture
def good(real_result: RunResult) -> dict[str, Any]:
    data = copy.deepcopy(real_result.to_json())
    validate(data)
    return data


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# --- atomic write -------------------------------------------------------------------------------

def test_write_then_load_round_trips(real_result: RunResult, tmp_path: Path) -> None:
    path = write_result(real_result, tmp_path)
    assert path == tmp_path / "split-digits" / "mlp" / "naive" / "seed0.json"
    assert load_result(path) == json.loads(json.dumps(real_result.to_json()))
    assert _files(tmp_path) == ["seed0.json"]


def _fsync_fails(fd: Any) -> None:
    """The bytes were written to the temp file but never made it to disk."""
    raise OSError("disk full (simulated)")


def _replace_fails(src: Any, dst: Any) -> None:
    raise OSError("rename failed (simulated)")


@pytest.mark.parametrize("target, fake", [
    ("os.fsync", _fsync_fails),
    ("os.replace", _replace_fails),
])
def test_failed_write_leaves_no_file_and_no_temp(target: str, fake: Callable[..., None],
                                                 real_result: RunResult, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    module, name = target.split(".")
    monkeypatch.setattr({"json": json, "os": os}[module], name, fake)
    with pytest.raises(ClbenchError, match="simulated"):  # one line naming the file
        write_result(real_result, tmp_path)
    monkeypatch.undo()
    final = result_path(tmp_path, real_result.config)
    assert not final.exists()
    assert _files(tmp_path) == [], "a temp file was left behind"


def test_failed_rewrite_keeps_the_previous_file(real_result: RunResult, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_result(real_result, tmp_path)
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _fsync_fails)
    with pytest.raises(ClbenchError, match="unchanged"):
        write_result(real_result, tmp_path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    load_result(path)
    assert _files(tmp_path) == ["seed0.json"]


def test_an_invalid_result_is_not_written(real_result: RunResult, tmp_path: Path) -> None:
    bad = copy.deepcopy(real_result)
    bad.accuracy_matrix[0][0] = 1.5
    with pytest.raises(ClbenchError, match=r"at \$\.accuracy_matrix\[0\]\[0\]: is 1\.5, must be <= 1"):
        write_result(bad, tmp_path)
    assert _files(tmp_path) == []


# --- validation ---------------------------------------------------------------------------------

def _wrong_schema(d: dict[str, Any]) -> None:
    d["schema"] = "clbench.result/0"


def _missing_metrics(d: dict[str, Any]) -> None:
    del d["metrics"]


def _missing_provenance(d: dict[str, Any]) -> None:
    del d["provenance"]


def _accuracy_above_one(d: dict[str, Any]) -> None:
    d["accuracy_matrix"][-1][2] = 1.01


def _accuracy_not_a_number(d: dict[str, Any]) -> None:
    d["accuracy_matrix"][0][0] = "0.5"


def _short_row(d: dict[str, Any]) -> None:
    d["accuracy_matrix"][1] = d["accuracy_matrix"][1][:-1]


def _empty_matrix(d: dict[str, Any]) -> None:
    d["accuracy_matrix"] = []


def _metric_without_direction(d: dict[str, Any]) -> None:
    del d["metrics"]["final_accuracy"]["higher_is_better"]


def _bad_status(d: dict[str, Any]) -> None:
    d["status"] = "done"


def _config_without_seed(d: dict[str, Any]) -> None:
    del d["config"]["seed"]


def _stream_without_fingerprint(d: dict[str, Any]) -> None:
    del d["stream"]["fingerprint"]


def _metrics_is_a_list(d: dict[str, Any]) -> None:
    d["metrics"] = []


def _unknown_top_level_key(d: dict[str, Any]) -> None:
    d["metric"] = {}   # a typo: extra top-level keys are refused (the schema closes the top level)


def _seed_is_a_string(d: dict[str, Any]) -> None:
    d["config"]["seed"] = "0"


@pytest.mark.parametrize("mutate, fragment", [
    (_wrong_schema, 'at $.schema: is "clbench.result/0", expected "clbench.result/1"'),
    (_missing_metrics, "at $: missing key 'metrics'"),
    (_missing_provenance, "at $: missing key 'provenance'"),
    (_accuracy_above_one, "at $.accuracy_matrix[4][2]: is 1.01, must be <= 1"),
    (_accuracy_not_a_number, 'at $.accuracy_matrix[0][0]: "0.5" is a string, should be number'),
    (_short_row, "n_experiences=5 entries"),
    (_empty_matrix, "at $.accuracy_matrix: must not be empty"),
    (_metric_without_direction, "at $.metrics.final_accuracy: missing key 'higher_is_better'"),
    (_bad_status, 'at $.status: is "done", not one of "ok", "failed"'),
    (_config_without_seed, "at $.config: missing key 'seed'"),
    (_stream_without_fingerprint, "at $.stream: missing key 'fingerprint'"),
    (_metrics_is_a_list, "at $.metrics: [] is an array, should be object"),
    (_unknown_top_level_key, "at $: unknown result key 'metric'; did you mean 'metrics'?"),
    (_seed_is_a_string, 'at $.config.seed: "0" is a string, should be integer'),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_validate_names_the_problem(mutate: Callable[[dict[str, Any]], None], fragment: str,
                                   good: dict[str, Any], tmp_path: Path) -> None:
    mutate(good)
    with pytest.raises(ClbenchError, match=re.escape(fragment)) as e:
        validate(good, source="x.json")
    assert str(e.value).startswith(f"x.json: not a valid {SCHEMA} file: ")
    # the same file on disk is rejected by load_result, naming the path
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(good))
    with pytest.raises(ClbenchError, match=re.escape(fragment)) as e:
        load_result(path)
    assert str(path) in str(e.value)


def test_a_failed_run_needs_no_matrix(good: dict[str, Any]) -> None:
    good.update(status="failed", error="loss became nan", accuracy_matrix=[])
    validate(good)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ClbenchError, match=re.escape("at $: [1, 2] is an array, should be object")):
        validate([1, 2])


@pytest.mark.parametrize("text", [
    pytest.param(b"not json at all\n", id="not-json"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    pytest.param(b"", id="empty"),
], )
def test_non_json_file_is_rejected(text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "seed0.json"
    path.write_bytes(text)
    with pytest.raises(ClbenchError, match="not valid JSON") as e:
        load_result(path)
    assert str(path) in str(e.value) and "re-run" in str(e.value)


def test_truncated_file_is_rejected(good: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "seed0.json"
    text = json.dumps(good, indent=1)
    path.write_text(text[: len(text) * 2 // 3])
    with pytest.raises(ClbenchError, match="not valid JSON"):
        load_result(path)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match="no such result file"):
        load_result(tmp_path / "seed9.json")


# --- loading a folder ---------------------------------------------------------------------------

def test_load_results_strict_and_tolerant(real_result: RunResult, tmp_path: Path) -> None:
    ok = write_result(real_result, tmp_path)
    corrupt = ok.parent.parent / "replay" / "seed0.json"
    corrupt.parent.mkdir()
    corrupt.write_text(ok.read_text()[:100])
    (ok.parent / "notes.json").write_text("{}")            # not a seed*.json: never read
    loaded = load_results(tmp_path, strict=False)
    assert [r["config"]["strategy"] for r in loaded] == ["naive"]
    with pytest.raises(ClbenchError, match=re.escape(str(corrupt))):
        load_results(tmp_path, strict=True)
    with pytest.raises(ClbenchError, match="no such results folder"):
        load_results(tmp_path / "absent")


# --- tags and paths -----------------------------------------------------------------------------

def _tag(overrides: list[str], stream: str = "split-digits", strategy: str = "replay+ewc") -> str:
    cfg = resolve_config(stream, strategy, "mlp", 0, overrides).to_dict()
    return params_tag(cfg, resolve_config(stream, strategy, "mlp", 0).to_dict())


def test_params_tag() -> None:
    assert _tag([]) == ""
    assert _tag(["epochs=10", "replay.mem_size=200"]) == ""      # equal to the defaults
    a = _tag(["epochs=2", "ewc.ewc_lambda=5"])
    assert re.fullmatch(r"@[0-9a-f]{8}", a)
    assert _tag(["epochs=2", "ewc.ewc_lambda=5"]) == a            # stable
    assert _tag(["ewc.ewc_lambda=5", "epochs=2"]) == a            # order of overrides is irrelevant
    assert _tag(["ewc.ewc_lambda=5.0", "epochs=2"]) == a          # so is the spelling of a value
    others = {_tag(o) for o in (["epochs=3", "ewc.ewc_lambda=5"], ["epochs=2"],
                                ["model.hidden=64"], ["task_incremental=true"])}
    assert a not in others and "" not in others and len(others) == 4


def test_params_tag_ignores_what_the_path_already_says() -> None:
    """Seed, stream and data root are not parameters: they do not change the tag."""
    base = resolve_config("split-digits", "ewc", "mlp", 0, ["epochs=2"]).to_dict()
    other = resolve_config("split-digits", "ewc", "mlp", 3, ["epochs=2"], data_root="/x").to_dict()
    defaults = resolve_config("split-digits", "ewc", "mlp", 0).to_dict()
    assert params_tag(base, defaults) == params_tag(other, defaults) != ""


def test_result_path_is_predictable() -> None:
    cfg = resolve_config("split-mnist1d", "replay+ewc", "mlp", 3).to_dict()
    assert result_path("res", cfg) == Path("res/split-mnist1d/mlp/replay+ewc/seed3.json")
    assert result_path(Path("/r"), cfg, "@0123abcd") == Path(
        "/r/split-mnist1d/mlp/replay+ewc@0123abcd/seed3.json")
