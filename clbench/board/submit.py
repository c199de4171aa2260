"""Submit a method to the leaderboard: run the suite for it, verify every result, publish.

    clbench submit strategies/my_method.py --suite cpu-v1 --results leaderboard/results
    clbench submit my_method.py --suite cpu-v1 --from my-results/   # results run elsewhere

(``my-results/`` as written by ``clbench run --stream <the suite's streams> --strategy my-method
--seeds <its seeds> --results my-results``, with the method's file in ``strategies/``.)

The file is imported and run: it is code, so read it before submitting someone else's.
Each step rejects the submission (``ClbenchError``: one line, exit 2) with the reason. Before
any of them, the leaderboard folder (``--out-dir``, default the results folder's parent) must be
that suite's marked board or a new one (:func:`clbench.board.leaderboard.check_out_dir`), so a
submission never runs only to be refused, nor overwrites a project's README.md:

1. **one method**: importing the file registers exactly one new strategy; its name is the
   submission's (a file already in ``strategies/`` is imported on the registry's first lookup: its one
   registration counts);
2. **new**: the leaderboard has no results for that strategy yet;
3. **results**: the suite's cells (streams x models x seeds, the suite's overrides) are run
   with :func:`clbench.run.sweep.run_cells` into a staging folder, or read from ``--from``;
4. **schema**: every expected file exists and passes :func:`clbench.results.load_result`
   (schema, directions, ranges and agreement with its own accuracy matrix:
   :mod:`clbench.validation`), its run succeeded, and its config is the suite's (training,
   method, model and monosemanticity settings); the leaderboard's own results pass the same
   checks before anything runs, and no submitted file duplicates one of them;
5. **same data**: each result's stream version is the registered stream's, and its
   fingerprint (which hashes the data and the seed's class order) equals the one recorded by
   the leaderboard's results for the same stream and seed;
6. **reproducible**: one cell (the first stream, model and seed) is run again with the thread
   count its result records; every entry of the two accuracy matrices must agree within
   :data:`RERUN_ATOL` (runs are deterministic on CPU at a fixed thread count);
7. **publish**: the files are copied into the leaderboard's results folder (atomically, one
   by one) and the leaderboard's tables, figures and page are regenerated
   (:func:`clbench.board.leaderboard.build_leaderboard`).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import clbench.strategies as builtin_methods
from clbench.errors import ClbenchError
from clbench.board.leaderboard import build_leaderboard, check_out_dir
from clbench.results import load_result, load_result_files, write_json_atomic
from clbench.run.sweep import Planned, plan, run_cells
from clbench.strategy_api import STRATEGIES
from clbench.streams import STREAMS
from clbench.suites import Suite, load_suite
from clbench.validation import refuse_duplicates

RERUN_ATOL = 1e-6
#: config keys that must equal the suite's resolved config
CONFIG_KEYS = ("train", "strategy_params", "model_params", "task_incremental", "mono")


@dataclass(frozen=True)
class Submission:
    """What was published: the strategy, its result files and the regenerated outputs."""

    strategy: str
    results: list[Path]
    outputs: list[Path]
    rerun_max_diff: float


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


def check_result(p: Planned, source: Path, known: dict[tuple[str, int], dict[str, Any]]
                 ) -> dict[str, Any]:
    """Steps 4 and 5 for one expected result file; returns its data."""
    where = f"{p.cell.stream} seed {p.cell.seed}"
    if not p.path.exists():
        raise ClbenchError(f"{where}: missing result {p.path.relative_to(source)} in {source}; "
                           "run every cell of the suite")
    data = load_result(p.path)
    if data["status"] != "ok":
        first = str(data.get("error")).splitlines()[0] if data.get("error") else "no error given"
        raise ClbenchError(f"{where}: the run failed ({first}); fix the method and resubmit")
    want = p.config.to_dict()
    for key in CONFIG_KEYS:
        if json.dumps(data["config"].get(key), sort_keys=True) != json.dumps(want.get(key), sort_keys=True):
            raise ClbenchError(f"{where}: config {key!r} is not the suite's "
                               f"({data['config'].get(key)!r} != {want.get(key)!r}); "
                               "run the suite unchanged")
    stream = data["stream"]
    version = STREAMS.get(p.cell.stream).obj.version
    if str(stream["version"]) != version:
        raise ClbenchError(f"{where}: made with stream version {stream['version']}, the "
                           f"leaderboard uses {version}; rerun with this clbench")
    ref = known.get((p.cell.stream, p.cell.seed))
    if ref is not None and ref["fingerprint"] != stream["fingerprint"]:
        raise ClbenchError(f"{where}: data fingerprint {stream['fingerprint'][:12]} differs from "
                           f"the leaderboard's {ref['fingerprint'][:12]}; the data or its class "
                           "order differ from the leaderboard's: use the same dataset files")
    return data


def rerun_diff(p: Planned, data: dict[str, Any], overrides: list[str], data_root: str | None,
               show_progress: bool) -> float:
    """Step 6: run ``p`` again in a temp folder; the largest |R - R'| (inf if shapes differ)."""
    threads = data["provenance"].get("determinism", {}).get("torch_num_threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with tempfile.TemporaryDirectory(prefix="clbench-rerun-") as tmp:
            [path] = run_cells([p.cell], tmp, overrides, data_root, resume=False,
                               show_progress=show_progress)
            again = load_result(path)
    finally:
        torch.set_num_threads(before)
    if again["stream"]["fingerprint"] != data["stream"]["fingerprint"]:
        return float("inf")
    a, b = np.array(data["accuracy_matrix"]), np.array(again["accuracy_matrix"])
    return float("inf") if a.shape != b.shape else float(np.abs(a - b).max())


def submit(file: str | Path, suite: str | Suite, results: str | Path,
           from_dir: str | Path | None = None, data_root: str | None = None,
           out_dir: str | Path | None = None, show_progress: bool = True) -> Submission:
    """Every step of the module docstring; returns what was published."""
    name = import_strategy(file)
    s = suite if isinstance(suite, Suite) else load_suite(suite)
    results = Path(results)
    out = Path(out_dir) if out_dir else results.parent
    check_out_dir(out, s.name, s.name, results)  # before anything is run or copied
    mine = sorted(results.glob(f"*/*/{name}/seed*.json")) + sorted(results.glob(f"*/*/{name}@*/seed*.json"))
    if mine:
        raise ClbenchError(f"strategy {name!r} is already on the leaderboard ({len(mine)} files, "
                           f"e.g. {mine[0]}); remove them to resubmit, or rename the method")
    cells = s.cells(strategies=[name])
    existing = _existing(results)
    staging = Path(from_dir) if from_dir else Path(tempfile.mkdtemp(prefix="clbench-submit-"))
    try:
        if from_dir is None:
            run_cells(cells, staging, s.overrides, data_root, show_progress=show_progress)
        planned = plan(cells, s.overrides, staging, data_root)
        known = {(r["config"]["stream"], int(r["config"]["seed"])): r["stream"]
                 for _, r in existing}
        datas = [check_result(p, staging, known) for p in planned]
        refuse_duplicates([*existing, *[(p.path, d) for p, d in zip(planned, datas)]])
        diff = rerun_diff(planned[0], datas[0], s.overrides, data_root, show_progress)
        if not diff <= RERUN_ATOL:
            raise ClbenchError(f"{planned[0].cell.stream} seed {planned[0].cell.seed}: a re-run "
                               f"gives a different accuracy matrix (max |diff| {diff:.3g} > "
                               f"{RERUN_ATOL:g}); results must be reproducible from the method file")
        written = [write_json_atomic(results / p.path.relative_to(staging), d)
                   for p, d in zip(planned, datas)]
    finally:
        if from_dir is None:
            shutil.rmtree(staging, ignore_errors=True)
    outputs = build_leaderboard(results, out, name=s.name, suite=s)
    return Submission(name, written, outputs, diff)
