"""Issue 17: bad input never crashes a sweep after it has trained, the leaderboard never
overwrites a folder that is not one, faults leave nothing behind, two sweeps share a folder.

Real components throughout: the ``clbench`` CLI's ``main``, real result files (the committed
leaderboard's, or written by a 1-epoch run on the embedded ``split-digits`` stream), real
subprocesses for the concurrency checks. Faults the machine cannot be made to have on demand
(a full disk, a figure that cannot be drawn) are injected at the one call that would fail.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clbench import atomic
from clbench.board import leaderboard as lb
from clbench.checkpoints import load_state
from clbench.cli import main
from clbench.data.idx import IMAGES_MAGIC, parse_idx
from clbench.errors import ClbenchError, DataError
from clbench.names import check_name
from clbench.results import RunResult, load_result, result_path, write_result
from clbench.run.lock import CellLock, lock_path
from clbench.strategy_api import register_strategy
from clbench.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
BOARD_RESULTS = ROOT / "leaderboard" / "results"
RUN = ["run", "--stream", "split-digits", "--seeds", "0", "--set", "epochs=1", "--quiet",
       "--threads", "1"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``clbench: error:`` line on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("clbench: error: "), err
    return lines[0]


def small_results(root: Path, strategies: tuple[str, ...] = ("naive", "replay")) -> Path:
    """The committed split-digits results (seeds 0-2) of ``strategies``, copied under ``root``."""
    for s in strategies:
        for seed in (0, 1, 2):
            src = BOARD_RESULTS / "split-digits" / "mlp" / s / f"seed{seed}.json"
            dst = root / "split-digits" / "mlp" / s / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root


def result_files(root: Path) -> list[Path]:
    return sorted(root.rglob("seed*.json")) if root.exists() else []


# --- item 6: a leaderboard is written only into a leaderboard folder --------------------------

def test_leaderboard_never_overwrites_a_project_readme(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    results = small_results(project / "results")
    (project / "README.md").write_text("my project\n")
    assert main(["leaderboard", str(results), "--name", "mini"]) == 2   # default: the parent
    line = one_error_line(capsys)
    assert "--out-dir" in line and "--init" in line and lb.MARKER in line
    assert (project / "README.md").read_text() == "my project\n"
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "results"]

    board = tmp_path / "board"   # a new folder: written and marked
    assert main(["leaderboard", str(results), "--name", "mini", "--out-dir", str(board)]) == 0
    assert json.loads((board / lb.MARKER).read_text())["name"] == "mini"
    assert main(["leaderboard", str(results), "--name", "mini", "--out-dir", str(board)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(results), "--name", "other", "--out-dir", str(board)]) == 2
    assert "is the leaderboard 'mini'" in one_error_line(capsys)
    assert main(["leaderboard", str(results), "--name", "mini", "--init"]) == 0   # on purpose
    assert (project / lb.MARKER).is_file() and "mini" in (project / "README.md").read_text()


def test_a_folder_holding_only_the_results_is_a_new_board(tmp_path: Path) -> None:
    results = small_results(tmp_path / "board" / "results")
    assert main(["leaderboard", str(results), "--name", "mini"]) == 0
    assert (tmp_path / "board" / lb.MARKER).is_file()


SUBMISSION = '''
from avalanche.core import SupervisedPlugin
from clbench import register_strategy


@register_strategy("rel17-noop", description="does nothing")
def build(p, ctx):
    return SupervisedPlugin()
'''


def test_submit_refuses_an_unmarked_leaderboard_before_running(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from clbench.strategy_api import STRATEGIES

    # the submission registers rel17-noop; it must not outlive this test
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))
    project = tmp_path / "project"
    results = small_results(project / "results")
    (project / "README.md").write_text("my project\n")
    method = tmp_path / "rel17_noop.py"
    method.write_text(SUBMISSION)
    before = result_files(results)
    assert main(["submit", str(method), "--suite", "quick", "--results", str(results)]) == 2
    assert "--out-dir" in one_error_line(capsys)
    assert (project / "README.md").read_text() == "my project\n"
    assert result_files(results) == before


@pytest.mark.parametrize("board", ["leaderboard", "leaderboard/cpu-v2"])
def test_committed_boards_are_marked(board: str) -> None:
    marker = json.loads((ROOT / board / lb.MARKER).read_text())
    name = Path(board).name if board != "leaderboard" else "cpu-v1"
    record = marker.pop("suite_record")
    assert marker == {"schema": lb.MARKER_SCHEMA, "name": name, "suite": name}
    assert record["name"] == name and record["seeds"] == load_suite(name).seeds


# --- items 9 and 10: every setting is checked before the first cell trains --------------------

@pytest.mark.parametrize("strategy,setting", [
    ("naive,replay", "lr=inf"), ("naive,replay", "momentum=nan"),
    ("naive,replay", "weight_decay=nan"), ("ewc", "ewc.ewc_lambda=nan"),
    ("naive,replay", "momentum=-0.5"), ("naive,replay", "weight_decay=-1"),
    ("replay", "replay.mem_size=-5"), ("naive,replay", "mono.layer=nonexistent"),
    # zero where a method divides or batches by it: each cell trained, then failed
    ("lwf", "lwf.temperature=0"), ("agem", "agem.sample_size=0"), ("gdumb", "gdumb.batch_size=0"),
])
def test_bad_setting_is_refused_before_any_cell_trains(strategy: str, setting: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Two seeds, so that on the code before the fix a first cell trained (and crashed at the
    write, or failed, or failed the second one): now nothing trains."""
    rc = main([*RUN, "--seeds", "0,1", "--strategy", strategy, "--set", setting,
               "--results", str(tmp_path / "r")])
    assert rc == 2
    assert setting.split("=")[0] in one_error_line(capsys)
    assert result_files(tmp_path / "r") == []


def test_a_cell_refused_at_its_start_leaves_no_folder(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A model setting that fails when the cell builds its model (after the cell's lock made
    ``stream/model/strategy``) is one line, and the empty folders go with the lock."""
    rc = main([*RUN, "--strategy", "naive", "--set", "model.hidden=-5",
               "--results", str(tmp_path / "r")])
    assert rc == 2
    assert "hidden" in one_error_line(capsys)
    assert list((tmp_path / "r").rglob("*")) == []


def test_metric_typo_is_refused_before_the_sweep(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*RUN, "--strategy", "naive", "--metric", "final_acuracy",
                 "--results", str(tmp_path / "r")]) == 2
    assert "final_accuracy" in one_error_line(capsys)   # did you mean
    assert result_files(tmp_path / "r") == []


def _committed_result() -> RunResult:
    d = json.loads((BOARD_RESULTS / "split-digits" / "mlp" / "naive" / "seed0.json").read_text())
    return RunResult(config=d["config"], stream=d["stream"], accuracy_matrix=d["accuracy_matrix"],
                     random_init_accuracy=d["random_init_accuracy"], metrics=d["metrics"],
                     per_experience=d["per_experience"], provenance=d["provenance"])


def test_a_non_finite_value_is_written_as_a_failed_result(tmp_path: Path) -> None:
    result = _committed_result()
    result.per_experience[1]["train_seconds"] = float("nan")
    result.config["train"]["lr"] = float("inf")
    path = write_result(result, tmp_path)
    data = load_result(path)
    assert data["status"] == "failed"
    assert "per_experience[1].train_seconds" in data["error"] and "config.train.lr" in data["error"]
    assert data["per_experience"][1]["train_seconds"] is None


# --- item 11: one error line for malformed input ----------------------------------------------

def _suite_file(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / f"s{len(list(tmp_path.glob('*.yaml')))}.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


SUITE = ("name: s\nversion: '1'\ndescription: {desc}\nstreams: [split-digits]\nmodels: [mlp]\n"
         "strategies: [naive]\nseeds: {seeds}\n")
BOMB = ("name: s\nversion: '1'\nstreams: [split-digits]\nmodels: [mlp]\nstrategies: [naive]\n"
        "seeds: [0]\ndescription: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"d{i}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                  for i in range(8)))


SUITE_RUN = ["run", "--quiet", "--threads", "1", "--set", "epochs=1", "--suite"]
STRATEGY_RUN = ["run", "--stream", "split-digits", "--strategy", "naive", "--set", "epochs=1",
                "--quiet", "--threads", "1"]


@pytest.mark.parametrize("argv,fragment", [
    ([*STRATEGY_RUN, "--seeds", "-1"], "seed -1"),
    ([*STRATEGY_RUN, "--seeds", "0", "--results", "{file}"], "a file, not a folder"),
    ([*SUITE_RUN, "{neg}"], "seeds"),
    ([*SUITE_RUN, "{latin1}"], "UTF-8"),
    ([*SUITE_RUN, "{bomb}"], "aliases"),
    ([*SUITE_RUN, "{dotdot}"], "'/'"),
])
def test_run_input_errors_are_one_line(argv: list[str], fragment: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    subs = {"{file}": str(tmp_path / "afile"),
            "{neg}": str(_suite_file(tmp_path, SUITE.format(desc="d", seeds="[-3]"))),
            "{latin1}": str(_suite_file(tmp_path, SUITE.format(desc="caf\xe9", seeds="[0]")
                                        .encode("latin-1"))),
            "{bomb}": str(_suite_file(tmp_path, BOMB)),
            "{dotdot}": str(_suite_file(tmp_path, SUITE.format(desc="d", seeds="[0]")
                                        .replace("name: s", "name: ../../x")))}
    args = [subs.get(a, a) for a in argv]
    if "--results" not in args:
        args += ["--results", str(tmp_path / "r")]
    assert main(args) == 2
    assert fragment in one_error_line(capsys)
    assert result_files(tmp_path / "r") == []


def _break(path: Path, how: str) -> None:
    d = json.loads(path.read_text())
    if how == "metric":
        d["metrics"]["final_accuracy"]["value"] = "high"
    elif how == "seed":
        d["config"]["seed"] = "zero"
    elif how == "deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
        return
    elif how == "label":
        d["label"] = "../evil"
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("how", ["metric", "seed", "deep", "label", "folder"])
def test_malformed_result_files_are_one_line(how: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    results = small_results(tmp_path / "r")
    if how == "folder":
        (results / "split-digits" / "mlp" / "naive" / "seed9.json").mkdir()
    else:
        _break(results / "split-digits" / "mlp" / "naive" / "seed1.json", how)
    assert main(["rank", str(results)]) == 2
    one_error_line(capsys)
    assert main(["check", str(results), "--write-baseline", str(tmp_path / "b.json")]) == 2
    one_error_line(capsys)


def test_malformed_baseline_value_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    results = small_results(tmp_path / "r")
    base = tmp_path / "b.json"
    assert main(["check", str(results), "--write-baseline", str(base)]) == 0
    d = json.loads(base.read_text())
    d["cells"][0]["metrics"]["final_accuracy"]["values"]["0"] = "high"
    base.write_text(json.dumps(d))
    capsys.readouterr()
    assert main(["check", str(results), "--baseline", str(base)]) == 2
    assert "'high'" in one_error_line(capsys)


def test_rank_out_pointing_at_a_folder_is_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    results = small_results(tmp_path / "r")
    (tmp_path / "out").mkdir()
    assert main(["rank", str(results), "--out", str(tmp_path / "out")]) == 2
    assert "is a folder" in one_error_line(capsys)
    assert list(tmp_path.glob(".*")) == []


def test_a_tensor_is_not_a_checkpoint(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "exp0.pt")
    with pytest.raises(ClbenchError, match="not a state dict"):
        load_state(tmp_path / "exp0.pt")


def test_idx_header_whose_size_overflows_is_a_data_error() -> None:
    dims = (2**22, 2**21, 2**21)   # product 2**64: 0 in int64 arithmetic
    header = IMAGES_MAGIC.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(header, IMAGES_MAGIC, "x-idx3-ubyte")


# --- item 12: names are plain text, a rebuild writes all or nothing, names stay in their folder

def test_mathtext_in_a_label_is_drawn_as_typed(tmp_path: Path) -> None:
    results = small_results(tmp_path / "r")
    for p in (results / "split-digits" / "mlp" / "replay").glob("seed*.json"):
        d = json.loads(p.read_text())
        d["label"] = "my$x^{$"
        p.write_text(json.dumps(d))
    paths = lb.build_leaderboard(results, tmp_path / "board", name="mini")
    assert {p.name for p in paths} >= {"README.md", "cd-diagram.png", "pareto-state.png"}
    assert "my$x^{$" in (tmp_path / "board" / "README.md").read_text()


def test_a_failed_rebuild_leaves_the_old_board(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    results = small_results(tmp_path / "r", ("naive", "replay", "ewc"))
    board = tmp_path / "board"
    lb.build_leaderboard(results, board, name="mini")
    before = {p.name: p.read_bytes() for p in board.iterdir()}
    shutil.rmtree(results / "split-digits" / "mlp" / "ewc")

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(lb, "pareto_figure", broken)   # fails after README and CSV are made
    with pytest.raises(RuntimeError):
        lb.build_leaderboard(results, board, name="mini")
    assert {p.name: p.read_bytes() for p in board.iterdir()} == before


def test_names_that_leave_their_folder_are_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("../x", "a/b", "..", ".hidden", "tab\there", ""):
        with pytest.raises(ClbenchError):
            check_name("strategy", bad)
    with pytest.raises(ValueError, match="may not contain '/'"):
        register_strategy("../escape", description="x")
    cfg = {"stream": "split-digits", "model": "mlp", "strategy": "../../escape", "seed": 0}
    with pytest.raises(ClbenchError):
        result_path(tmp_path, cfg)
    results = small_results(tmp_path / "r")
    assert main(["leaderboard", str(results), "--name", "../../x", "--out-dir",
                 str(tmp_path / "b")]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "x.csv").exists() and load_suite("quick").name == "quick"


# --- items 14 and 15: stale temp files go, a full disk is one line -----------------------------

def _age(path: Path, seconds: float = 3600) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_stale_temp_files_are_removed_on_the_next_run(tmp_path: Path) -> None:
    results = tmp_path / "r"
    assert main([*RUN, "--strategy", "naive", "--results", str(results)]) == 0
    folder = result_files(results)[0].parent
    stale = folder / ".seed0.json.k3j9x_2a.tmp"
    stale.write_text("{half")
    _age(stale)
    young = folder / ".seed1.json.abcdefgh.tmp"
    young.write_text("{in flight")
    assert main([*RUN, "--strategy", "naive", "--results", str(results)]) == 0   # resumes
    assert not stale.exists() and young.exists()

    out = tmp_path / "table.md"
    left = tmp_path / ".table.md.q1w2e3r4.tmp"
    left.write_text("partial")
    _age(left)
    assert main(["rank", str(results), "--out", str(out)]) == 0
    assert out.is_file() and not left.exists()


def test_disk_full_is_one_line_naming_what_was_saved(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 1:   # the first result fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    results = tmp_path / "r"
    assert main([*RUN, "--strategy", "naive,replay", "--results", str(results)]) == 2
    line = one_error_line(capsys)
    assert "No space left on device" in line and f"1 results of this sweep were saved in {results}" in line
    assert len(result_files(results)) == 1 and not list(results.rglob(".*.tmp"))


class _FullDiskJson:
    """``json`` for the lock module, whose second ``dump`` meets a full disk (what a real full
    tmpfs did: the lock file is created, writing its owner fails)."""

    def __init__(self) -> None:
        self.dumps = 0

    def dump(self, obj: object, f: object) -> None:
        self.dumps += 1
        if self.dumps > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        json.dump(obj, f)

    loads = staticmethod(json.loads)


def test_disk_full_at_a_cell_lock_is_one_line_and_leaves_no_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A disk that fills between two cells fails the second cell's lock, not only its result."""
    from clbench.run import lock as lock_module

    monkeypatch.setattr(lock_module, "json", _FullDiskJson())
    results = tmp_path / "r"
    assert main([*RUN, "--strategy", "naive,replay", "--results", str(results)]) == 2
    line = one_error_line(capsys)
    assert "No space left on device" in line and ".seed0.json.lock" in line, line
    assert f"1 results of this sweep were saved in {results}" in line, line
    assert len(result_files(results)) == 1
    assert not list(results.rglob(".*.lock")) and not list(results.rglob(".*.tmp"))


# --- item 16: two sweeps on one folder run each cell once -------------------------------------

def test_cell_lock_is_exclusive_and_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    result = tmp_path / "seed0.json"
    lock = CellLock.acquire(result)
    assert lock is not None and CellLock.acquire(result) is None
    lock.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    owner = json.loads(lock_path(result).read_text()) if lock_path(result).exists() else {}
    assert owner == {}
    import socket
    lock_path(result).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                             "started": 0}))
    taken = CellLock.acquire(result)
    assert taken is not None
    assert json.loads(lock_path(result).read_text())["pid"] == os.getpid()
    taken.release()
    assert not lock_path(result).exists()


def test_a_live_lock_leaves_the_cell_to_its_owner(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "r"
    from clbench.run.plan import plan
    from clbench.suites import Cell
    [p] = plan([Cell("split-digits", "mlp", "replay", 0)], ["epochs=1"], results)
    held = CellLock.acquire(p.path)   # this process: alive
    assert held is not None
    try:
        assert main([*RUN, "--strategy", "naive,replay", "--results", str(results)]) == 0
    finally:
        held.release()
    assert [f.parent.name.split("@")[0] for f in result_files(results)] == ["naive"]
    assert "1 cells left to another clbench run" in capsys.readouterr().err


CONCURRENT = r'''
import sys
import clbench.run.executors as ex
from clbench.run.sweep import run_cells
from clbench.suites import Cell

log, results = sys.argv[1], sys.argv[2]
real = ex.run_planned

def counted(p, opts, progress=None):
    with open(log, "a") as f:
        f.write(f"{p.cell.strategy} {p.cell.seed}\n")
    return real(p, opts, progress)

ex.run_planned = counted
cells = [Cell("split-digits", "mlp", s, seed) for seed in (0, 1) for s in ("naive", "replay")]
run_cells(cells, results, ["epochs=2"], show_progress=False, threads=1)
'''


def test_two_concurrent_runs_run_each_cell_once(tmp_path: Path) -> None:
    log, results = tmp_path / "ran.log", tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(log), str(results)],
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    ran = log.read_text().splitlines()
    assert sorted(ran) == ["naive 0", "naive 1", "replay 0", "replay 1"], (ran, errs)
    assert len(result_files(results)) == 4
    assert not list(results.rglob(".*.lock"))
