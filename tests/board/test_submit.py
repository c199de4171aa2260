"""`clbench submit`: a tiny real method on a one-stream suite is accepted and published; files
that fail the schema, come from other data or disagree with their re-run are rejected."""
from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from clbench.cli import main
from clbench.metrics.cl import cl_metrics
from clbench.results import load_result
from clbench.strategy_api import STRATEGIES
import clbench.board.submit as submit_module
from clbench.board.submit import import_strategy, submit
from clbench.errors import ClbenchError

ROOT = Path(__file__).resolve().parents[2]
NAME = "weight-avg"
METHOD = '''"""weight-avg: after each experience, pull the weights part-way back to the previous ones."""
from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin

from clbench import BuildContext, register_strategy


class WeightAverage(SupervisedPlugin):
    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.prev: dict[str, torch.Tensor] = {}

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        with torch.no_grad():
            for n, p in strategy.model.named_parameters():
                if n in self.prev:
                    p.mul_(1 - self.beta).add_(self.beta * self.prev[n])
        self.prev = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}


@register_strategy("weight-avg", description="average with the previous weights", defaults={"beta": 0.3})
def build(p: dict[str, Any], ctx: BuildContext) -> WeightAverage:
    return WeightAverage(p["beta"])
'''
SECOND = '''

@register_strategy("weight-avg-2", description="the same, stronger", defaults={"beta": 0.6})
def build2(p: dict[str, Any], ctx: BuildContext) -> WeightAverage:
    return WeightAverage(p["beta"])
'''
SUITE = """name: digits-mini
version: "1"
description: split-digits, 2 seeds, 1 epoch (submission test)
streams: [split-digits]
models: [mlp]
strategies: [naive]
seeds: [0, 1]
overrides: ["epochs=1", "mono.when=off"]
"""


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strategies a test's submission registers are gone after it."""
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))


def _mine(results: Path) -> list[Path]:
    """The submission's result folders (tagged @<hash>: the suite overrides epochs)."""
    return sorted((results / "split-digits" / "mlp").glob(f"{NAME}@*"))


def _board(root: Path) -> Path:
    """A small leaderboard: the committed split-digits results of naive and replay, seeds 0-1."""
    for s in ("naive", "replay"):
        for seed in (0, 1):
            src = ROOT / "leaderboard" / "results" / "split-digits" / "mlp" / s / f"seed{seed}.json"
            dst = root / "results" / "split-digits" / "mlp" / s / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root / "results"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("submission")
    (d / "weight_avg.py").write_text(METHOD)
    (d / "mini.yaml").write_text(SUITE)
    return {"method": d / "weight_avg.py", "suite": d / "mini.yaml", "dir": d}


def _submit(files: dict[str, Path], results: Path, *extra: str, method: Path | None = None) -> int:
    return main(["submit", str(method or files["method"]), "--suite", str(files["suite"]),
                 "--results", str(results), "--quiet", *extra])


@pytest.fixture(scope="module")
def accepted(files: dict[str, Path]) -> Iterator[tuple[Path, int]]:
    """One real accepted submission (2 runs, 1 re-run, the tables regenerated)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))
        results = _board(files["dir"] / "board")
        rc = _submit(files, results)
    yield results, rc


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("clbench: error: "), err
    return err


def test_accepted_submission_is_published(accepted: tuple[Path, int]) -> None:
    results, rc = accepted
    assert rc == 0
    [folder] = _mine(results)
    mine = sorted(folder.glob("seed*.json"))
    assert [p.name for p in mine] == ["seed0.json", "seed1.json"]
    for p in mine:
        data = load_result(p)
        assert data["status"] == "ok" and data["config"]["train"]["epochs"] == 1
    readme = (results.parent / "README.md").read_text()
    assert f"| {folder.name}" in readme and "--name digits-mini" in readme
    assert (results.parent / "index.html").is_file() and (results.parent / "digits-mini.csv").is_file()
    assert NAME in (results.parent / "index.html").read_text()


def test_resubmitting_is_refused(accepted: tuple[Path, int], files: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    results, _ = accepted
    capsys.readouterr()
    assert _submit(files, results) == 2
    assert "already on the leaderboard" in _one_error(capsys)


def _set(path: list[str], value: object) -> Callable[[dict], None]:
    def f(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return f


def _bump_accuracy(d: dict) -> None:
    """A forged matrix whose metrics were recomputed to match it: only the re-run tells."""
    R = d["accuracy_matrix"]
    R[-1][-1] = R[-1][-1] - 0.01 if R[-1][-1] > 0.5 else R[-1][-1] + 0.01
    for k, v in cl_metrics(R, d["random_init_accuracy"]).items():
        d["metrics"][k]["value"] = None if math.isnan(v) else v


TAMPER = [
    pytest.param(lambda d: d.pop("metrics"), "not a valid clbench.result/1", id="schema"),
    pytest.param(_set(["stream", "fingerprint"], "f" * 64), "data fingerprint", id="other-data"),
    pytest.param(_set(["stream", "version"], "0.9"), "stream version 0.9", id="stream-version"),
    pytest.param(_set(["config", "train", "epochs"], 3), "epochs 3 differs from the suite's 1",
                 id="other-config"),
    pytest.param(_bump_accuracy, "gives a different accuracy matrix", id="not-reproducible"),
    pytest.param(_set(["metrics", "final_accuracy", "value"], 0.99),
                 "'final_accuracy' is 0.99, but the file's own accuracy matrix gives",
                 id="inflated-metric"),
    pytest.param(_set(["metrics", "final_accuracy", "higher_is_better"], False),
                 "'final_accuracy' is marked higher_is_better=false", id="direction"),
    pytest.param(None, "stream split-digits seed 1 missing", id="missing-file"),
]


@pytest.mark.parametrize("tamper, why", TAMPER)
def test_bad_results_are_rejected(accepted: tuple[Path, int], files: dict[str, Path],
                                  tmp_path: Path, tamper: Callable[[dict], None] | None, why: str,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--from results (the accepted run's files, one changed) are checked like fresh ones
    (every cell re-run here, so that the tampered one is)."""
    monkeypatch.setattr(submit_module, "RERUN_SHARE", 1.0)
    [src] = _mine(accepted[0])
    given = tmp_path / "mine" / "split-digits" / "mlp" / src.name
    shutil.copytree(src, given)
    target = given / "seed0.json"
    if tamper is None:
        (given / "seed1.json").unlink()
    else:
        data = json.loads(target.read_text())
        tamper(data)
        target.write_text(json.dumps(data))
    results = _board(tmp_path / "board")
    capsys.readouterr()
    assert _submit(files, results, "--from", str(tmp_path / "mine")) == 2
    assert why in _one_error(capsys)
    assert not _mine(results), "nothing is published"
    assert not (results.parent / "README.md").exists()


def test_untampered_from_results_are_accepted(accepted: tuple[Path, int], files: dict[str, Path],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [src] = _mine(accepted[0])
    shutil.copytree(src, tmp_path / "mine" / "split-digits" / "mlp" / src.name)
    results = _board(tmp_path / "board")
    rngs: list[random.Random] = []
    real = submit_module.choose_reruns

    def spy(planned: list, rng: random.Random) -> list:
        rngs.append(rng)
        return real(planned, rng)

    monkeypatch.setattr(submit_module, "choose_reruns", spy)
    assert _submit(files, results, "--from", str(tmp_path / "mine")) == 0
    # issue 17 item 1: the CLI's seeds to re-run come from the OS, not a seedable generator
    assert [type(r) for r in rngs] == [random.SystemRandom]
    [folder] = _mine(results)
    assert len(list(folder.glob("seed*.json"))) == 2


def test_a_board_holding_a_duplicate_is_refused_before_anything_runs(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 4: the leaderboard's own results are loaded (validated, duplicates refused)
    before the method runs, so a publish can never fail half-way on them."""
    results = _board(tmp_path / "board")
    copy = results / "old" / "split-digits" / "mlp" / "naive" / "seed0.json"
    copy.parent.mkdir(parents=True)
    shutil.copy(results / "split-digits" / "mlp" / "naive" / "seed0.json", copy)
    assert _submit(files, results) == 2
    err = _one_error(capsys)
    assert str(copy) in err and "hold the same result" in err, err
    assert not _mine(results) and not (results.parent / "README.md").exists()


def test_a_submitted_file_duplicating_a_board_result_is_refused(
        accepted: tuple[Path, int], files: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The board already holds the method's seed 0 under another folder: the submission's own
    seed 0 would count it twice."""
    [src] = _mine(accepted[0])
    shutil.copytree(src, tmp_path / "mine" / "split-digits" / "mlp" / src.name)
    results = _board(tmp_path / "board")
    stale = results / "old" / "split-digits" / "mlp" / src.name / "seed0.json"
    stale.parent.mkdir(parents=True)
    shutil.copy(src / "seed0.json", stale)
    assert _submit(files, results, "--from", str(tmp_path / "mine")) == 2
    err = _one_error(capsys)
    assert str(stale) in err and "hold the same result" in err, err
    assert not _mine(results)


class _Pick(random.Random):
    """An rng whose ``sample`` takes the cells of one seed: the verifier's choice, made known."""

    def __init__(self, seed: int) -> None:
        super().__init__(0)
        self.seed_ = seed

    def sample(self, population, k):  # type: ignore[override]
        return [p for p in population if p.cell.seed == self.seed_][:k]


def _forged_copy(accepted: tuple[Path, int], tmp_path: Path, seed: int,
                 change: Callable[[dict], None]) -> Path:
    [src] = _mine(accepted[0])
    given = tmp_path / "mine" / "split-digits" / "mlp" / src.name
    shutil.copytree(src, given)
    data = json.loads((given / f"seed{seed}.json").read_text())
    change(data)
    (given / f"seed{seed}.json").write_text(json.dumps(data))
    return tmp_path / "mine"


def _refused_at_the_rerun_of_seed_1(mine: Path, files: dict[str, Path], tmp_path: Path) -> None:
    """Submitting ``mine`` with the verifier drawing seed 1 fails at its re-run; nothing lands."""
    results = _board(tmp_path / "board")
    with pytest.raises(ClbenchError, match="re-run of split-digits seed 1 gives a different"):
        submit(files["method"], str(files["suite"]), results, from_dir=mine,
               show_progress=False, rng=_Pick(1))
    assert not _mine(results)


def test_a_forged_nonzero_seed_is_caught_when_the_verifier_picks_it(
        accepted: tuple[Path, int], files: dict[str, Path], tmp_path: Path) -> None:
    """Issue 17 item 1: seed 1 holds a forged matrix (metrics recomputed to match): the re-run
    of seed 1, chosen by the verifier, refuses it; the seeds re-run are recorded."""
    mine = _forged_copy(accepted, tmp_path, 1, _bump_accuracy)
    _refused_at_the_rerun_of_seed_1(mine, files, tmp_path)
    clean = tmp_path / "clean"
    [src] = _mine(accepted[0])
    shutil.copytree(src, clean / "split-digits" / "mlp" / src.name)
    s = submit(files["method"], str(files["suite"]), _board(tmp_path / "board2"),
               from_dir=clean, show_progress=False, rng=_Pick(1))
    assert s.reruns == ("split-digits/mlp seed 1",)


def test_reruns_cover_every_stream_and_vary_with_the_draw(tmp_path: Path) -> None:
    """Issue 17 item 1: per stream ceil(RERUN_SHARE * n) cells, at least one, any of its seeds
    (not always seed 0): a stream of one seed is always re-run, one of five gets two seeds."""
    from clbench.run.sweep import plan
    from clbench.suites import Cell

    cells = [Cell("split-digits", "mlp", "naive", 0)] + [
        Cell("split-mnist1d", "mlp", "naive", seed) for seed in range(5)]
    planned = plan(cells, ["epochs=1"], tmp_path)
    drawn: dict[str, set[int]] = {}
    for draw in range(20):
        chosen = submit_module.choose_reruns(planned, random.Random(draw))
        per = {st: [p.cell.seed for p in chosen if p.cell.stream == st]
               for st in ("split-digits", "split-mnist1d")}
        assert len(per["split-digits"]) == 1
        assert len(per["split-mnist1d"]) == math.ceil(submit_module.RERUN_SHARE * 5) == 2
        assert len(set(per["split-mnist1d"])) == 2
        for st, seeds in per.items():
            drawn.setdefault(st, set()).update(seeds)
    assert drawn == {"split-digits": {0}, "split-mnist1d": {0, 1, 2, 3, 4}}


def _halve_state(d: dict) -> None:
    """A smaller memory footprint, consistent with its own per-experience record."""
    assert d["metrics"]["state_bytes"]["value"] > 0
    for rec in d["per_experience"]:
        rec["state_bytes"] //= 2
    d["metrics"]["state_bytes"]["value"] = float(max(r["state_bytes"] for r in d["per_experience"]))


def _zero_random_init(d: dict) -> None:
    """Untrained accuracies of 0 (FWT recomputed to match): the matrix itself unchanged."""
    d["random_init_accuracy"] = [0.0] * len(d["random_init_accuracy"])
    for k, v in cl_metrics(d["accuracy_matrix"], d["random_init_accuracy"]).items():
        d["metrics"][k]["value"] = None if math.isnan(v) else v


@pytest.mark.parametrize("change", [pytest.param(_halve_state, id="state-bytes"),
                                    pytest.param(_zero_random_init, id="random-init")])
def test_a_forged_record_beside_a_true_matrix_is_caught_by_the_rerun(
        accepted: tuple[Path, int], files: dict[str, Path], tmp_path: Path,
        change: Callable[[dict], None]) -> None:
    """Issue 17 item 1: the board also shows the state a method keeps (and FWT, from the
    untrained accuracies); both are deterministic, so the re-run compares them too."""
    mine = _forged_copy(accepted, tmp_path, 1, change)
    _refused_at_the_rerun_of_seed_1(mine, files, tmp_path)


@pytest.mark.parametrize("change, why", [
    pytest.param(_set(["config", "strategy"], "naive"), "strategy 'naive' is not the submission's",
                 id="other-strategy"),
    pytest.param(_set(["label"], "naive"), "label 'naive' is not the submission's", id="label"),
])
def test_a_file_relabelled_from_another_method_is_refused(
        accepted: tuple[Path, int], files: dict[str, Path], tmp_path: Path, change: Callable,
        why: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 1: every file must be the submitted method's, whichever seed is re-run."""
    mine = _forged_copy(accepted, tmp_path, 1, change)
    results = _board(tmp_path / "board")
    capsys.readouterr()
    assert _submit(files, results, "--from", str(mine)) == 2
    err = _one_error(capsys)
    assert why in err and "seed1.json" in err, err
    assert not _mine(results)


SABOTEUR = METHOD + '''

import clbench.board.submit as _verifier
_verifier.rerun_diff = lambda *a, **k: 0.0          # switch the comparison off ...
_verifier.choose_reruns = lambda planned, rng: planned
_verifier.RERUN_ATOL = float("inf")
'''


def test_a_method_cannot_switch_the_verifier_off(
        accepted: tuple[Path, int], files: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 2: the method's code runs in worker processes only, so patching the
    verifier on import changes nothing: a forged matrix is still refused."""
    method = tmp_path / "weight_avg.py"
    method.write_text(SABOTEUR)
    mine = _forged_copy(accepted, tmp_path, 0, _bump_accuracy)
    results = _board(tmp_path / "board")
    before = submit_module.rerun_diff
    with pytest.raises(ClbenchError, match="gives a different accuracy matrix"):
        submit(method, str(files["suite"]), results, from_dir=mine, show_progress=False,
               rng=_Pick(0))
    assert submit_module.rerun_diff is before
    assert not _mine(results)


REGISTRATIONS = [
    pytest.param("x = 1\n", "found: none", id="none"),
    pytest.param(METHOD + SECOND, "found: weight-avg, weight-avg-2", id="two"),
    pytest.param(METHOD.replace('"weight-avg"', '"naive"'), "registered twice", id="taken-name"),
    pytest.param("def broken(:\n", "importing it failed: SyntaxError", id="syntax-error"),
]


@pytest.mark.parametrize("source, why", REGISTRATIONS)
def test_file_must_register_exactly_one_new_strategy(files: dict[str, Path], tmp_path: Path,
                                                     source: str, why: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    method = tmp_path / "m.py"
    method.write_text(source)
    assert _submit(files, _board(tmp_path / "board"), method=method) == 2
    assert why in _one_error(capsys)


def test_files_inside_the_strategies_package() -> None:
    """Already imported at start-up: their own registrations count."""
    assert import_strategy(ROOT / "strategies" / "TEMPLATE.py") == "template"
    with pytest.raises(Exception, match="found: agem, cumulative, der"):
        import_strategy(ROOT / "strategies" / "baselines.py")


# --- issue 16 item 1: a submission covers the board's suite with its exact settings ---------

#: the board's suite: two streams, two seeds, the default epochs
BOARD_SUITE = SUITE.replace("streams: [split-digits]", "streams: [split-digits, split-mnist1d]"
                            ).replace('["epochs=1", "mono.when=off"]', '["mono.when=off"]')


def _marked_board(root: Path, suite_text: str) -> Path:
    """`clbench leaderboard` over the small board, marked with ``suite_text``'s suite."""
    results = _board(root)
    suite = root.parent / f"{root.name}-suite.yaml"
    suite.write_text(suite_text)
    assert main(["leaderboard", str(results), "--name", "digits-mini", "--suite", str(suite),
                 "--out-dir", str(root)]) == 0
    return results


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("board, given, why", [
    pytest.param(BOARD_SUITE, SUITE.replace("seeds: [0, 1]", "seeds: [0]"),
                 "stream split-digits seed 1 (model mlp) missing from suite", id="one-seed-one-epoch"),
    pytest.param(BOARD_SUITE, SUITE, "stream split-mnist1d seed 0 (model mlp) missing", id="one-stream"),
    pytest.param(SUITE, SUITE.replace('"epochs=1"', '"epochs=2"'),
                 "stream split-digits: epochs 2 differs from the suite's 1", id="epochs"),
    pytest.param(SUITE, SUITE.replace('"epochs=1"', '"epochs=1", "batch_size=16"'),
                 "batch_size 16 differs from the suite's 32", id="batch-size"),
    pytest.param(SUITE, SUITE.replace('"epochs=1"', '"epochs=1", "optimizer=adam"'),
                 "optimizer adam differs from the suite's sgd", id="optimizer"),
    pytest.param(SUITE, SUITE.replace('"epochs=1"', '"epochs=1", "task_incremental=true"'),
                 "scenario task-IL differs from the suite's class-IL", id="scenario"),
    pytest.param(SUITE, SUITE.replace('"epochs=1"', '"epochs=1", "model.hidden=50"'),
                 "model.hidden [50] differs from the suite's [400, 400]", id="model"),
])
def test_a_suite_other_than_the_boards_is_refused(
        files: dict[str, Path], tmp_path: Path, board: str, given: str, why: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The marker records the board's suite; a submission whose suite file (same name) leaves
    out a stream or seed, or resolves a setting otherwise, is refused before anything runs, with
    the first difference named, and nothing on the board changes."""
    root = tmp_path / "board"
    results = _marked_board(root, board)
    before = _snapshot(root)
    (tmp_path / "given.yaml").write_text(given)
    capsys.readouterr()
    rc = main(["submit", str(files["method"]), "--suite", str(tmp_path / "given.yaml"),
               "--results", str(results), "--quiet"])
    err = _one_error(capsys)
    assert rc == 2 and why in err, err
    assert _snapshot(root) == before and not _mine(results)


def test_files_run_with_other_settings_are_named(accepted: tuple[Path, int], files: dict[str, Path],
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    """--from files made with a smaller suite (one seed, 2 epochs: another path tag) are refused
    naming the setting, not only as missing; the complete set is accepted on the marked board."""
    [src] = _mine(accepted[0])
    other = tmp_path / "other" / "split-digits" / "mlp" / f"{NAME}@0123abcd"
    other.mkdir(parents=True)
    data = json.loads((src / "seed0.json").read_text())
    data["config"]["train"]["epochs"] = 2
    (other / "seed0.json").write_text(json.dumps(data))
    root = tmp_path / "board"
    results = _marked_board(root, SUITE)
    capsys.readouterr()
    assert _submit(files, results, "--from", str(tmp_path / "other")) == 2
    err = _one_error(capsys)
    assert "stream split-digits seed 0" in err and "epochs 2 differs from the suite's 1" in err, err
    assert not _mine(results)
    shutil.copytree(src, tmp_path / "mine" / "split-digits" / "mlp" / src.name)
    assert _submit(files, results, "--from", str(tmp_path / "mine")) == 0
    assert [p.name for p in sorted(_mine(results)[0].glob("seed*.json"))] == ["seed0.json", "seed1.json"]


def test_rebuilding_a_board_with_another_suite_of_its_name_needs_init(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "board"
    results = _marked_board(root, BOARD_SUITE)
    (tmp_path / "small.yaml").write_text(SUITE)
    capsys.readouterr()
    args = ["leaderboard", str(results), "--name", "digits-mini", "--suite",
            str(tmp_path / "small.yaml"), "--out-dir", str(root)]
    assert main(args) == 2
    assert "stream split-mnist1d seed 0 (model mlp) missing" in _one_error(capsys)
    assert main([*args, "--init"]) == 0
    marker = json.loads((root / "clbench-leaderboard.json").read_text())
    assert marker["suite_record"]["streams"] == ["split-digits"]
    assert marker["suite_record"]["settings"]["split-digits/mlp"]["train"]["epochs"] == 1


def test_a_text_stream_result_is_checked_against_the_boards_recorded_version(
        tmp_path: Path) -> None:
    """text-v1's results carry their data revision (``text-v1.2+...``) where the registry says
    ``1``: the board's record decides, so a committed lm-v1 result passes and a file of another
    revision is refused (neither runs a language model)."""
    from clbench.board.protocol import suite_record
    from clbench.run.plan import plan
    from clbench.suites import Cell, load_suite
    src = ROOT / "leaderboard" / "results" / "text-v1" / "smollm2-135m" / "naive" / "seed0.json"
    data = json.loads(src.read_text())
    suite = load_suite("lm-v1")
    record = suite_record(suite, {"text-v1": str(data["stream"]["version"])})
    [p] = plan([Cell("text-v1", "smollm2-135m", "naive", 0)], list(suite.overrides), tmp_path)
    p.path.parent.mkdir(parents=True)
    shutil.copy(src, p.path)
    known = {("text-v1", 0): {"fingerprint": data["stream"]["fingerprint"]}}
    assert submit_module.check_result(p, tmp_path, known, record)["config"]["seed"] == 0
    record["settings"]["text-v1/smollm2-135m"]["stream_version"] = "text-v1.3+0000000000"
    with pytest.raises(ClbenchError, match="stream_version|stream version"):
        submit_module.check_result(p, tmp_path, known, record)
