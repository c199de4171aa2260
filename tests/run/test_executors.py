"""Every executor gives the local executor's results bit for bit, records failures, and stops on
user errors; the CLI's executor flags fail with one line. Ray runs on a real local cluster."""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.run.executors import EXECUTORS, Executor, SweepOptions, create_executor
from clbench.results import RunResult, load_result, write_result
from clbench.suites import Cell
from clbench.run.sweep import Planned, plan, run_cells

CELLS = [Cell("split-digits", "mlp", s, seed) for seed in (0, 1) for s in ("naive", "ewc")]
CHEAP = ["epochs=1", "mono.when=off"]
PARALLEL = [e.name for e in EXECUTORS if e.name != "local"]

try:
    import ray
except ImportError:  # the Ray tests skip, naming the fix
    ray = None


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A real local Ray cluster of 2 CPUs for this module, shut down at its end."""
    if ray is None:
        pytest.skip("ray is not installed: pip install 'clbench[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def warm(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Executor]]:
    """``warm(name)``: one started executor of 2 workers per name, shared by this module's tests
    (starting workers costs more than the tiny sweeps), closed at its end."""
    made: dict[str, Executor] = {}

    def get(name: str) -> Executor:
        if name == "ray":
            request.getfixturevalue("ray_cluster")
        if name not in made:
            made[name] = create_executor(name, workers=None if name == "local" else 2)
        return made[name]

    yield get
    for ex in made.values():
        ex.close()


def _by_cell(paths: list[Path]) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for p in paths:
        r = load_result(p)
        out[(r["config"]["strategy"], r["config"]["seed"])] = r
    return out


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Any]:
    root = tmp_path_factory.mktemp("local")
    return _by_cell(run_cells(CELLS, root, CHEAP, show_progress=False))


@pytest.mark.parametrize("name", PARALLEL)
def test_parallel_executor_matches_local_bit_for_bit(
        name: str, local_results: dict[tuple[str, int], dict[str, Any]], tmp_path: Path,
        warm: Callable[[str], Executor]) -> None:
    paths = run_cells(CELLS, tmp_path, CHEAP, show_progress=False, executor=warm(name))
    assert sorted(paths) == sorted(p.path for p in plan(CELLS, CHEAP, tmp_path))
    got = _by_cell(paths)
    assert set(got) == set(local_results) and len(got) == len(CELLS)
    for key, ref in local_results.items():
        r = got[key]
        assert r["status"] == "ok", r["error"]
        assert r["accuracy_matrix"] == ref["accuracy_matrix"], key          # exact float equality
        assert r["random_init_accuracy"] == ref["random_init_accuracy"], key
        det, ref_det = r["provenance"]["determinism"], ref["provenance"]["determinism"]
        # 2 workers on this machine's cores: max(1, cores // 2) threads each (1 on 2 cores)
        expected = max(1, (os.cpu_count() or 1) // 2) if name == "process" else 1
        assert det["torch_num_threads"] == expected
        for k in ("deterministic_algorithms", "cpu_capability", "float32_matmul_precision"):
            assert det[k] == ref_det[k], k
        assert r["label"] == ref["label"]
    # resume: a second sweep finds every cell done and dispatches nothing
    before = {p: p.stat().st_mtime_ns for p in paths}
    run_cells(CELLS, tmp_path, CHEAP, show_progress=False, executor=warm(name))
    assert {p: p.stat().st_mtime_ns for p in paths} == before


def _planned(cell: Cell, overrides: list[str], root: Path) -> Planned:
    return plan([cell], [*CHEAP, *overrides], root)[0]


@pytest.mark.parametrize("name", [e.name for e in EXECUTORS])
def test_failing_cell_is_recorded_and_a_user_error_stops_the_sweep(
        name: str, tmp_path: Path, warm: Callable[[str], Executor]) -> None:
    """A cell whose method raises comes back failed (with the reason) and the next cell still
    runs; a dataset missing on a worker stops the sweep with the user's error."""
    # an empty GDumb memory passes every check and raises inside training (IndexError)
    bad = _planned(Cell("split-digits", "mlp", "gdumb", 0), ["gdumb.mem_size=0", "epochs=1"],
                   tmp_path)
    good = _planned(Cell("split-digits", "mlp", "naive", 1), [], tmp_path)
    no_data = tmp_path / "no-data"
    no_data.mkdir()
    missing = _planned(Cell("split-mnist", "mlp", "naive", 0), [], tmp_path)
    written: list[tuple[Planned, RunResult]] = []

    def record(p: Planned, r: RunResult) -> Path:
        written.append((p, r))
        return write_result(r, tmp_path, p.tag)

    ex = warm(name)
    opts = SweepOptions(data_root=str(no_data), show_progress=False)
    ex.start([bad, good], opts)
    paths = ex.run([bad, good], opts, record)
    assert sorted(paths) == sorted([bad.path, good.path])
    results = {p.cell.strategy: r for p, r in written}
    assert results["gdumb"].status == "failed"
    assert "IndexError" in results["gdumb"].error and "Traceback" in results["gdumb"].error
    assert results["naive"].status == "ok"
    assert load_result(bad.path)["status"] == "failed"   # a valid file: resume skips it
    with pytest.raises(ClbenchError, match="MNIST"):
        ex.run([missing], opts, record)
    assert not missing.path.exists()


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize("flags, fragment", [
    (["--executor", "proces"], "did you mean 'process'"),
    (["--workers", "2"], "--workers 2 needs a parallel executor"),
    (["--executor", "process", "--workers", "0"], "--workers 0: must be at least 1"),
    (["--executor", "process", "--address", "auto"], "--address is for a Ray cluster"),
    pytest.param(["--executor", "ray", "--address", "127.0.0.1:1"], "nothing answers there",
                 marks=pytest.mark.skipif(ray is None, reason="ray is not installed")),
])
def test_executor_flag_mistakes_are_one_line_errors(flags: list[str], fragment: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _cli(["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
                    "--results", str(tmp_path / "r"), "--quiet", *flags], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("clbench: error: ")
    assert fragment in err, err
    assert not (tmp_path / "r").exists()


def test_ray_executor_without_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now raises ImportError
    rc, err = _cli(["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
                    "--results", str(tmp_path), "--executor", "ray", "--quiet"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1
    assert "pip install 'clbench[ray]'" in err, err
