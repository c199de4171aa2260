"""Submit a method to the leaderboard: run the suite for it, verify every result, publish.

    clbench submit strategies/my_method.py --suite cpu-v1 --results leaderboard/results
    clbench submit my_method.py --suite cpu-v1 --from my-results/   # results run elsewhere

(``my-results/`` as written by ``clbench run --stream <the suite's streams> --strategy my-method
--seeds <its seeds> --results my-results``, with the method's file in ``strategies/``.)

Submitting runs the file's code: read it before submitting someone else's. It runs only in
worker processes (``python -m clbench.board.submit describe|run ...``, :func:`_worker_main`);
this, the verifying process, never imports it (it plans with a code-less stub of the
strategy's registered defaults), so the method cannot replace the checks below. A worker is
a process, not a sandbox: a method written to fake its own re-run is not stopped.
Each step rejects the submission (``ClbenchError``: one line, exit 2) with the reason. Before
any of them, the leaderboard folder (``--out-dir``, default the results folder's parent) must be
that suite's marked board or a new one (:func:`clbench.board.leaderboard.check_out_dir`), so a
submission never runs only to be refused, nor overwrites a project's README.md; and the suite
given must be the board's as its marker records it (:mod:`clbench.board.protocol`: every
stream and seed, each stream's resolved settings; a new board records the first submission's),
or the first (stream, seed) missing or setting that differs is named:

1. **one method**: importing the file (in a worker) registers exactly one new strategy; its name is the
   submission's (a file already in ``strategies/`` is imported on the registry's first lookup: its one
   registration counts);
2. **new**: the leaderboard has no results for that strategy yet;
3. **results**: the suite's cells (streams x models x seeds, the suite's overrides) are run
   with :func:`clbench.run.sweep.run_cells` into a staging folder, or read from ``--from``;
4. **schema**: every expected file exists and passes :func:`clbench.results.load_result`
   (schema, directions, ranges and agreement with its own accuracy matrix:
   :mod:`clbench.validation`), its run succeeded, its ``config.strategy``, label, stream,
   model and seed are the submitted cell's (a file of another method, relabelled, is refused
   naming the file), its settings are those the board's suite records (a file run with other
   settings is named with the first that differs), and its config is the suite's (training,
   method, model and monosemanticity settings); the leaderboard's own results pass the same
   checks before anything runs, and no submitted file duplicates one of them;
5. **same data**: each result's stream version is the registered stream's, and its
   fingerprint (which hashes the data and the seed's class order) equals the one recorded by
   the leaderboard's results for the same stream and seed;
6. **reproducible**: per stream, ``ceil(RERUN_SHARE * n)`` of its ``n`` cells (at least one),
   chosen by the verifier at random (:class:`random.SystemRandom`, so a submitter cannot know
   which seeds are checked), are run again in a worker with the thread count each result
   records; every entry of the two accuracy matrices and of the untrained accuracies must
   agree within :data:`RERUN_ATOL` and each experience's state bytes exactly (runs are
   deterministic on CPU at a fixed thread count), and the cells re-run are reported;
7. **publish**: the files are copied into the leaderboard's results folder (atomically, one
   by one) and the leaderboard's tables, figures and page are regenerated
   (:func:`clbench.board.leaderboard.build_leaderboard`).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import clbench.strategies as builtin_methods
from clbench.errors import ClbenchError
from clbench.board.leaderboard import build_leaderboard, check_out_dir, recorded_suite
from clbench.board.protocol import (check_suite_matches, result_settings, settings_difference,
                                   suite_record)
from clbench.results import load_result, load_result_files, write_json_atomic
from clbench.run.sweep import Planned, plan, run_cells
from clbench.strategy_api import STRATEGIES, StrategySpec
from clbench.streams import STREAMS
from clbench.suites import Cell, Suite, load_suite
from clbench.validation import refuse_duplicates

RERUN_ATOL = 1e-6
#: the share of each stream's cells re-run (rounded up: at least one per stream)
RERUN_SHARE = 0.25
#: config keys that must equal the suite's resolved config
CONFIG_KEYS = ("train", "strategy_params", "model_params", "task_incremental", "mono")


@dataclass(frozen=True)
class Submission:
    """What was published: the strategy, its result files and the regenerated outputs."""

    strategy: str
    results: list[Path]
    outputs: list[Path]
    rerun_max_diff: float
    #: the cells re-run, as "stream/model seed N" (chosen by the verifier, unpredictably)
    reruns: tuple[str, ...] = ()


def _execute(path: Path, load: Callable[[], object]) -> None:
    """Run the submitter's module code; any error it raises is a one-line rejection."""
    try:
        load()
    except ValueError as e:
        if "registered twice" in str(e):
            raise ClbenchError(f"{path}: {e}; give your method a name of its own in "
                               "register_strategy(...)") from None
        raise ClbenchError(f"{path}: importing it failed: {e}") from None
    except Exception as e:  # noqa: BLE001  (the submitter's code: any error is a rejection)
        raise ClbenchError(f"{path}: importing it failed: {type(e).__name__}: {e}") from None


def import_strategy(path: str | Path) -> str:
    """Import ``path`` and return the one strategy it registers (see step 1)."""
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise ClbenchError(f"{path}: no such Python file; give the path of your method's .py file")
    package = Path(builtin_methods.__file__).resolve().parent
    if path.parent == package:  # imported on the registry's first lookup (not TEMPLATE.py)
        module = f"clbench.strategies.{path.stem}"
        if module not in sys.modules:
            _execute(path, lambda: importlib.import_module(module))
        names = [e.name for e in STRATEGIES if getattr(e.obj.build, "__module__", "") == module]
    else:
        before = set(STRATEGIES.names())
        module = f"clbench_submission_{path.stem}_{len(sys.modules)}"
        spec = importlib.util.spec_from_file_location(module, path)
        if spec is None or spec.loader is None:
            raise ClbenchError(f"{path}: cannot be imported as a Python module")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        _execute(path, lambda: spec.loader.exec_module(mod))  # type: ignore[union-attr]
        names = sorted(set(STRATEGIES.names()) - before)
    if len(names) != 1:
        found = ", ".join(names) if names else "none"
        raise ClbenchError(f"{path}: a submission registers exactly one strategy with "
                           f"@register_strategy (found: {found}); see strategies/TEMPLATE.py")
    return names[0]


def _existing(results: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The leaderboard's results, every one valid and none twice (none if the folder does not
    exist yet): a board that would not rebuild is refused before the method runs."""
    return load_result_files(results) if results.is_dir() else []


def _settings_of(record: dict[str, Any] | None, p: Planned) -> dict[str, Any] | None:
    return (record or {}).get("settings", {}).get(f"{p.cell.stream}/{p.cell.model}")


def _missing(p: Planned, source: Path, record: dict[str, Any] | None) -> ClbenchError:
    """The rejection of a cell without its expected file: the setting that differs when the
    method's result for that cell exists under other settings (another path tag)."""
    where = f"stream {p.cell.stream} seed {p.cell.seed}"
    want = _settings_of(record, p)
    folder = source / p.cell.stream / p.cell.model
    for other in sorted(folder.glob(f"{p.cell.strategy}@*/seed{p.cell.seed}.json")) + sorted(
            folder.glob(f"{p.cell.strategy}/seed{p.cell.seed}.json")):
        try:
            diff = want and settings_difference(result_settings(load_result(other)), want)
        except ClbenchError:
            continue
        if diff:
            return ClbenchError(f"{where}: {other} was run with other settings: {diff}; run "
                                "the board's suite unchanged")
    return ClbenchError(f"{where} missing: no result {p.path.relative_to(source)} in {source}; "
                        "run every cell of the board's suite")


def check_result(p: Planned, source: Path, known: dict[tuple[str, int], dict[str, Any]],
                 record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Steps 4 and 5 for one expected result file; returns its data. ``record`` is the board's
    suite (:func:`clbench.board.protocol.suite_record`): the file's settings must be its."""
    where = f"{p.cell.stream} seed {p.cell.seed}"
    if not p.path.exists():
        raise _missing(p, source, record)
    data = load_result(p.path)
    if data["status"] != "ok":
        first = str(data.get("error")).splitlines()[0] if data.get("error") else "no error given"
        raise ClbenchError(f"{where}: the run failed ({first}); fix the method and resubmit")
    want = p.config.to_dict()
    c, label = data["config"], data.get("label", data["config"].get("strategy"))
    for key, got, expected in (("strategy", c.get("strategy"), p.cell.strategy),
                               ("stream", c.get("stream"), p.cell.stream),
                               ("model", c.get("model"), p.cell.model),
                               ("seed", c.get("seed"), p.cell.seed),
                               ("label", label, p.cell.strategy + p.tag)):
        if got != expected:
            raise ClbenchError(f"{p.path}: {key} {got!r} is not the submission's {expected!r}; "
                               f"submit only results that {p.cell.strategy!r} wrote for this suite")
    want_settings = _settings_of(record, p)
    if want_settings and (diff := settings_difference(result_settings(data), want_settings)):
        raise ClbenchError(f"stream {where}: {diff}; run the board's suite unchanged")
    for key in CONFIG_KEYS:
        if json.dumps(data["config"].get(key), sort_keys=True) != json.dumps(want.get(key), sort_keys=True):
            raise ClbenchError(f"{where}: config {key!r} is not the suite's "
                               f"({data['config'].get(key)!r} != {want.get(key)!r}); "
                               "run the suite unchanged")
    stream = data["stream"]
    # the board's record holds the version its results carry (a text stream's data revision,
    # e.g. text-v1.2+9251f93d8b, where the registry says 1); the registry's otherwise
    version = str((want_settings or {}).get("stream_version")
                  or STREAMS.get(p.cell.stream).obj.version)
    if str(stream["version"]) != version:
        raise ClbenchError(f"{where}: made with stream version {stream['version']}, the "
                           f"leaderboard uses {version}; rerun with this clbench")
    ref = known.get((p.cell.stream, p.cell.seed))
    if ref is not None and ref["fingerprint"] != stream["fingerprint"]:
        raise ClbenchError(f"{where}: data fingerprint {stream['fingerprint'][:12]} differs from "
                           f"the leaderboard's {ref['fingerprint'][:12]}; the data or its class "
                           "order differ from the leaderboard's: use the same dataset files")
    return data


def _worker(args: list[str], what: str) -> dict[str, Any]:
    """Run this module's worker (``python -m clbench.board.submit ...``) in a fresh process:
    the method's code runs there, never in the verifier's. Returns its JSON report; its
    ClbenchError comes back as one here."""
    with tempfile.TemporaryDirectory(prefix="clbench-worker-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "clbench.board.submit", *args, "--report", str(report)]
        here = str(Path(__file__).resolve().parents[2])  # this clbench, whatever the cwd
        path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path})
        try:
            out = json.loads(report.read_text())
        except (OSError, ValueError):
            raise ClbenchError(f"{what}: the method's process ended with exit code "
                               f"{proc.returncode} and no report; run the suite with "
                               "'clbench run' to see its error") from None
    if not isinstance(out, dict) or (proc.returncode != 0 and "error" not in out):
        raise ClbenchError(f"{what}: the method's process failed (exit code {proc.returncode})")
    if "error" in out:
        raise ClbenchError(str(out["error"]))
    return out


def describe_strategy(path: str | Path) -> str:
    """Step 1 in a separate process: the one strategy the file registers; registered here as a
    stub (its defaults only, no code: building it here raises) so that cells can be planned."""
    path = Path(path).resolve()
    out = _worker(["describe", str(path)], str(path))
    name = str(out["name"])
    if name not in STRATEGIES:  # a file of the strategies package is already registered
        def build(p: dict[str, Any], ctx: Any) -> Any:
            raise ClbenchError(f"strategy {name!r} runs only in its submission's process")
        STRATEGIES.add(name, StrategySpec(name, build, out["kind"], dict(out["defaults"]),
                                          {k: dict(v) for k, v in out["family_defaults"].items()},
                                          bool(out["offline"]), out["no_task_il"]),
                       description=f"submission {path.name} (not importable here)",
                       kind=out["kind"])
    return name


def choose_reruns(planned: list[Planned], rng: random.Random) -> list[Planned]:
    """The cells to re-run: per stream, ``ceil(RERUN_SHARE * n)`` of its ``n`` cells (at least
    one), drawn by ``rng`` (the CLI's is :class:`random.SystemRandom`: a submitter cannot know
    which seeds will be checked, so every file must be genuine)."""
    by_stream: dict[str, list[Planned]] = {}
    for p in planned:
        by_stream.setdefault(p.cell.stream, []).append(p)
    chosen = []
    for cells in by_stream.values():
        chosen += rng.sample(cells, max(1, math.ceil(RERUN_SHARE * len(cells))))
    return chosen


def run_in_worker(file: Path, cells: list[Cell], out: Path, overrides: list[str],
                  data_root: str | None, threads: int | None, show_progress: bool) -> None:
    """Run ``cells`` of the method in ``file`` into ``out``, in a separate process."""
    args = ["run", str(Path(file).resolve()), str(out), "--cells",
            json.dumps([[c.stream, c.model, c.strategy, c.seed] for c in cells]),
            "--overrides", json.dumps(list(overrides))]
    if data_root:
        args += ["--data-root", str(data_root)]
    if threads:
        args += ["--threads", str(int(threads))]
    if not show_progress:
        args.append("--quiet")
    _worker(args, f"{file}: running {len(cells)} cells")


def rerun_diff(file: Path, p: Planned, data: dict[str, Any], overrides: list[str],
               data_root: str | None, show_progress: bool) -> float:
    """Step 6 for one cell: run ``p`` again (in the method's own process) with the thread count
    its result records; the largest |R - R'| over the accuracy matrix and the untrained
    accuracies (inf if the data, config, shapes or the state bytes of any experience differ).
    Compared here, in the verifier's process, which never imported the method."""
    threads = data["provenance"].get("determinism", {}).get("torch_num_threads")
    with tempfile.TemporaryDirectory(prefix="clbench-rerun-") as tmp:
        run_in_worker(file, [p.cell], Path(tmp), overrides, data_root, threads, show_progress)
        [again_at] = plan([p.cell], overrides, tmp, data_root)
        again_path = again_at.path
        if not again_path.is_file():
            return float("inf")
        again = load_result(again_path)
    if again["status"] != "ok" or again["stream"]["fingerprint"] != data["stream"]["fingerprint"]:
        return float("inf")
    if any(json.dumps(again["config"].get(k), sort_keys=True)
           != json.dumps(data["config"].get(k), sort_keys=True) for k in CONFIG_KEYS):
        return float("inf")
    if _state_bytes(again) != _state_bytes(data):
        return float("inf")
    diffs = []
    for key in ("accuracy_matrix", "random_init_accuracy"):
        a, b = np.array(data[key], dtype=float), np.array(again[key], dtype=float)
        if a.shape != b.shape:
            return float("inf")
        diffs.append(float(np.abs(a - b).max(initial=0.0)))
    return max(diffs)


def _state_bytes(data: dict[str, Any]) -> list[Any]:
    """The state a run kept after each experience: deterministic, and shown on the board."""
    return [rec.get("state_bytes") for rec in data["per_experience"]]


def submit(file: str | Path, suite: str | Suite, results: str | Path,
           from_dir: str | Path | None = None, data_root: str | None = None,
           out_dir: str | Path | None = None, show_progress: bool = True,
           rng: random.Random | None = None, threads: int | None = None) -> Submission:
    """Every step of the module docstring; returns what was published. ``rng`` chooses the
    cells re-run (default :class:`random.SystemRandom`); the method's code runs only in
    worker processes (with ``threads`` torch threads for the suite's runs)."""
    file = Path(file).resolve()
    if not file.is_file() or file.suffix != ".py":
        raise ClbenchError(f"{file}: no such Python file; give the path of your method's .py file")
    s = suite if isinstance(suite, Suite) else load_suite(suite)
    results = Path(results)
    out = Path(out_dir) if out_dir else results.parent
    check_out_dir(out, s.name, s.name, results)  # before anything is run or copied
    record = recorded_suite(out) or suite_record(s)  # a new board: the first submission's suite
    check_suite_matches(record, s, s.name if isinstance(suite, Suite) else str(suite))
    name = describe_strategy(file)
    mine = sorted(results.glob(f"*/*/{name}/seed*.json")) + sorted(results.glob(f"*/*/{name}@*/seed*.json"))
    if mine:
        raise ClbenchError(f"strategy {name!r} is already on the leaderboard ({len(mine)} files, "
                           f"e.g. {mine[0]}); remove them to resubmit, or rename the method")
    cells = s.cells(strategies=[name])
    existing = _existing(results)
    staging = Path(from_dir) if from_dir else Path(tempfile.mkdtemp(prefix="clbench-submit-"))
    try:
        planned = plan(cells, s.overrides, staging, data_root)
        if from_dir is None:
            run_in_worker(file, cells, staging, s.overrides, data_root, threads, show_progress)
        known = {(r["config"]["stream"], int(r["config"]["seed"])): r["stream"]
                 for _, r in existing}
        datas = [check_result(p, staging, known, record) for p in planned]
        refuse_duplicates([*existing, *[(p.path, d) for p, d in zip(planned, datas)]])
        data_of = {p.path: d for p, d in zip(planned, datas)}
        chosen = choose_reruns(planned, rng or random.SystemRandom())
        diff = 0.0
        for p in chosen:
            d = rerun_diff(file, p, data_of[p.path], s.overrides, data_root, show_progress)
            if not d <= RERUN_ATOL:
                raise ClbenchError(f"{p.path}: a re-run of {p.cell.stream} seed {p.cell.seed} "
                                   f"gives a different accuracy matrix, untrained accuracy or "
                                   f"state size (max |diff| {d:.3g} > "
                                   f"{RERUN_ATOL:g}); results must be reproducible from the "
                                   "method file")
            diff = max(diff, d)
        written = [write_json_atomic(results / p.path.relative_to(staging), d)
                   for p, d in zip(planned, datas)]
    finally:
        if from_dir is None:
            shutil.rmtree(staging, ignore_errors=True)
    outputs = build_leaderboard(results, out, name=s.name, suite=s)
    return Submission(name, written, outputs, diff,
                      tuple(f"{p.cell.stream}/{p.cell.model} seed {p.cell.seed}" for p in chosen))


# --- the worker: the only process that imports the submitted method ---------------------------

def _worker_main(argv: list[str]) -> int:
    """``python -m clbench.board.submit describe FILE --report R`` or ``... run FILE OUT --cells
    JSON --overrides JSON [--data-root D] [--threads N] [--quiet] --report R``: imports the
    method, does the one thing, writes a JSON report (``{"error": ...}`` on a ClbenchError)."""
    ap = argparse.ArgumentParser(prog="python -m clbench.board.submit")
    ap.add_argument("op", choices=["describe", "run"])
    ap.add_argument("file")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--cells", default="[]")
    ap.add_argument("--overrides", default="[]")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--report", required=True)
    a = ap.parse_args(argv)
    try:
        name = import_strategy(a.file)
        if a.op == "describe":
            spec = STRATEGIES.get(name).obj
            report: dict[str, Any] = {
                "name": name, "kind": spec.kind, "defaults": spec.defaults,
                "family_defaults": spec.family_defaults, "offline": spec.offline,
                "no_task_il": spec.no_task_il}
        else:
            if a.threads:
                torch.set_num_threads(a.threads)
            cells = [Cell(st, m, strat, int(seed)) for st, m, strat, seed in json.loads(a.cells)]
            run_cells(cells, a.out, json.loads(a.overrides), a.data_root, resume=False,
                      show_progress=not a.quiet)
            report = {"ran": len(cells)}
    except ClbenchError as e:
        report = {"error": str(e)}
    Path(a.report).write_text(json.dumps(report))
    return 0 if "error" not in report else 2


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
