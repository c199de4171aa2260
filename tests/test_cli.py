"""The ``clbench`` command end to end: user errors, a real run, ranking, resume, ``ls``."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from clbench.cli import main
from clbench.models import MODELS
from clbench.results import load_result
from clbench.strategy_api import STRATEGIES
from clbench.streams import STREAMS
from clbench.suites import Cell, suite_names
from clbench.run.sweep import plan

TAG = re.compile(r"^@[0-9a-f]{8}$")
FAST_RUN = ["run", "--stream", "split-digits", "--strategy", "naive,replay", "--seeds", "0",
            "--set", "epochs=1", "--quiet"]


def _one_error_line(err: str) -> str:
    """The single ``clbench: error:`` line of ``err`` (asserting there is exactly one line)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("clbench: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Train on one thread here: with 2 threads on 2 busy cores OpenMP spin-waits make a tiny
    run 50x slower. The session's thread count is restored for the other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real CLI run (naive and replay on split-digits, 1 epoch, seed 0): folder and stdout."""
    root = tmp_path_factory.mktemp("results")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([*FAST_RUN, "--results", str(root)])
    assert rc == 0
    return root, out.getvalue()


def _result_files(root: Path) -> dict[str, Path]:
    """strategy name (tag stripped) -> its seed0.json; asserts the tagged layout."""
    found: dict[str, Path] = {}
    for p in sorted((root / "split-digits" / "mlp").iterdir()):
        name, at, tag = p.name.partition("@")
        assert at and TAG.match("@" + tag), f"{p.name}: an overridden run needs an @<8 hex> tag"
        assert (p / "seed0.json").is_file()
        found[name] = p / "seed0.json"
    return found


# --- user errors: one line, exit status 2, no traceback ----------------------------------------

ERRORS = [
    pytest.param(["run", "--stream", "split-fmnst", "--strategy", "naive"],
                 "did you mean 'split-fmnist'", id="unknown-stream"),
    pytest.param(["run", "--stream", "split-digits", "--strategy", "navie"],
                 "did you mean 'naive'", id="unknown-strategy"),
    pytest.param(["run", "--stream", "split-digits", "--strategy", "naive", "--set", "epoch=1"],
                 "did you mean 'epochs'", id="unknown-override-key"),
    pytest.param(["run", "--stream", "split-digits", "--strategy", "naive", "--set", "epochs"],
                 "malformed override 'epochs'", id="malformed-override"),
    pytest.param(["run", "--stream", "split-digits", "--strategy", "naive", "--set", "epochs=abc"],
                 "expected an integer", id="mistyped-override"),
    pytest.param(["run", "--stream", "split-mnist", "--strategy", "naive", "--seeds", "0",
                  "--data-root", "{empty}", "--quiet"], "{empty}", id="missing-data-root-quiet"),
    pytest.param(["run", "--stream", "split-mnist", "--strategy", "naive", "--seeds", "0",
                  "--data-root", "{empty}"], "{empty}", id="missing-data-root-progress"),
    pytest.param(["run", "--suite", "quik"], "did you mean 'quick'", id="unknown-suite"),
    pytest.param(["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0,x"],
                 "--seeds", id="bad-seeds"),
    pytest.param(["rank", "{results}", "--metric", "final_acc"],
                 "did you mean 'final_accuracy'", id="rank-unknown-metric"),
    pytest.param(["rank", "{empty}/nowhere"], "no such results folder", id="rank-missing-folder"),
]


@pytest.mark.parametrize("argv, fragment", ERRORS)
def test_user_error_is_one_line_exit_2(argv: list[str], fragment: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       request: pytest.FixtureRequest) -> None:
    subst = {"{empty}": str(tmp_path)}
    if any("{results}" in a for a in argv):
        subst["{results}"] = str(request.getfixturevalue("results_dir")[0])
        capsys.readouterr()

    def fill(text: str) -> str:
        for k, v in subst.items():
            text = text.replace(k, v)
        return text

    rc = main([fill(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert fill(fragment) in _one_error_line(err)


def test_user_error_from_a_real_process(tmp_path: Path) -> None:
    """The installed ``clbench`` script: one stderr line, status 2, nothing on stdout."""
    script = Path(sys.executable).parent / "clbench"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "clbench.cli"]
    p = subprocess.run([*cmd, "run", "--stream", "split-fmnst", "--strategy", "naive"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "did you mean 'split-fmnist'" in _one_error_line(p.stderr)
    assert p.stdout == ""
    assert not any(tmp_path.iterdir()), "a failed run must not create a results folder"


# --- success path -------------------------------------------------------------------------------

def test_run_writes_one_result_per_strategy_and_prints_table(results_dir: tuple[Path, str]) -> None:
    root, stdout = results_dir
    files = _result_files(root)
    assert set(files) == {"naive", "replay"}
    assert "### split-digits" in stdout
    assert re.search(r"^\|\s*rank\s*\|\s*strategy\s*\|", stdout, re.M), stdout
    table = stdout.split("### Overall")[0]
    for name in ("naive", "replay"):
        assert re.search(rf"\|\s*\d+\s*\|\s*{name}@[0-9a-f]{{8}}\s*\|", table), table
    assert "2 results in" in stdout


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_rank_writes_csv_with_a_row_per_strategy(results_dir: tuple[Path, str]) -> None:
    root, _ = results_dir
    out = root.parent / f"{root.name}-tables" / "t.csv"
    assert main(["rank", str(root), "--format", "csv", "--out", str(out)]) == 0
    rows = _read_csv(out)
    assert sorted(r["strategy"].split("@")[0] for r in rows) == ["naive", "replay"]
    assert {r["stream"] for r in rows} == {"split-digits"}
    # default metric final_accuracy: higher is better, rank 1 has the highest mean
    best = max(rows, key=lambda r: float(r["final_accuracy_mean"]))
    assert float(best["rank"]) == 1.0
    assert not list(out.parent.glob(".*.tmp")), "the temp file of the atomic write is left over"


def test_rank_lower_is_better_metric_ranks_ascending(results_dir: tuple[Path, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = results_dir
    out = root.parent / f"{root.name}-forgetting.csv"
    assert main(["rank", str(root), "--metric", "forgetting_max", "--format", "csv",
                 "--out", str(out)]) == 0
    rows = _read_csv(out)
    values = [float(r["forgetting_max_mean"]) for r in rows]
    ranks = [float(r["rank"]) for r in rows]
    assert len(rows) == 2 and values[0] != values[1]
    for v, k in zip(values, ranks):
        assert k == 1 + sum(w < v for w in values), (values, ranks)  # 1 = lowest forgetting
    assert main(["rank", str(root), "--metric", "forgetting_max"]) == 0
    assert "lower is better" in capsys.readouterr().out


def test_resume_skips_done_cells_and_no_resume_reruns(results_dir: tuple[Path, str]) -> None:
    root, _ = results_dir
    files = _result_files(root)
    old = 1_000_000_000  # a marker mtime (2001): a rewrite replaces it
    for f in files.values():
        os.utime(f, (old, old))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*FAST_RUN, "--results", str(root)]) == 0
    assert [f.stat().st_mtime for f in files.values()] == [old, old]
    # --no-resume re-runs the requested cells (here only naive) and leaves the others alone
    rerun = [a if a != "naive,replay" else "naive" for a in FAST_RUN]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*rerun, "--results", str(root), "--no-resume"]) == 0
    assert files["naive"].stat().st_mtime > old
    assert files["replay"].stat().st_mtime == old
    assert load_result(files["naive"])["status"] == "ok"


def test_override_tags_the_result_path(tmp_path: Path) -> None:
    cells = [Cell("split-digits", "mlp", "naive", 0)]
    default = plan(cells, [], tmp_path)[0].path
    assert default == tmp_path / "split-digits" / "mlp" / "naive" / "seed0.json"
    # an override equal to the default keeps the short name
    assert plan(cells, ["epochs=10"], tmp_path)[0].path == default
    tagged = plan(cells, ["epochs=1"], tmp_path)[0]
    assert TAG.match(tagged.tag) and tagged.path.parent.name == "naive" + tagged.tag
    assert plan(cells, ["lr=0.05"], tmp_path)[0].tag not in ("", tagged.tag)


# --- ls -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("what, names", [
    ("streams", STREAMS.names()),
    ("strategies", STRATEGIES.names()),
    ("models", MODELS.names()),
    ("suites", suite_names()),
])
def test_ls_lists_every_registered_name(what: str, names: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert names, f"nothing registered under {what}"
    assert main(["ls", what]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == sorted(names)
