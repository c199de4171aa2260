"""``clbench.results_frame`` and the board's per-seed CSV, on result files of a real tiny run."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import clbench
from clbench.board.frame import COLUMNS, PER_METRIC
from clbench.board.leaderboard import build_leaderboard
from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.metrics.registry import METRICS
from clbench.results import load_result_files, load_results

SEEDS = (0, 1)
RUN_COLUMNS = [c for c in COLUMNS if c not in PER_METRIC]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """naive and replay on split-digits, 1 epoch, seeds 0 and 1, one thread: real result files."""
    root = tmp_path_factory.mktemp("results")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--stream", "split-digits", "--strategy", "naive,replay", "--seeds",
                     ",".join(map(str, SEEDS)), "--threads", "1", "--set", "epochs=1", "--quiet",
                     "--results", str(root)]) == 0
    return root


def test_the_frame_has_one_row_per_run_and_metric(folder: Path) -> None:
    df = clbench.results_frame(folder)
    loaded = load_result_files(folder)
    assert len(loaded) == 2 * len(SEEDS)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == sum(len(data["metrics"]) for _, data in loaded)
    assert not df.duplicated(["strategy", "seed", "metric"]).any()
    for path, data in loaded:
        c = data["config"]
        rows = df[df.path == path.relative_to(folder).as_posix()]
        assert set(rows.metric) == set(data["metrics"])
        final = rows[rows.metric == "final_accuracy"]
        assert final.value.tolist() == [data["metrics"]["final_accuracy"]["value"]]
        row = final.iloc[0]
        assert (row.stream, row.stream_version, row.model, row.method, row.seed) == \
            ("split-digits", data["stream"]["version"], "mlp", c["strategy"], c["seed"])
        assert row.strategy == data["label"] and row.strategy.startswith(c["strategy"] + "@")
        assert row.scenario == "class-IL" and bool(row.higher_is_better)
        assert (row.epochs, row.batch_size, row.lr, row.optimizer, row.threads) == \
            (1, c["train"]["batch_size"], c["train"]["lr"], c["train"]["optimizer"], 1)
        assert json.loads(row.strategy_params) == c["strategy_params"]


def test_the_frame_goes_through_the_validated_loader(folder: Path, tmp_path: Path) -> None:
    """An edited value is refused with the same message as ``clbench rank`` / ``check`` give."""
    copy = tmp_path / "results"
    shutil.copytree(folder, copy)
    path = sorted(copy.rglob("seed0.json"))[0]
    data = json.loads(path.read_text())
    data["metrics"]["final_accuracy"]["value"] = 0.999
    path.write_text(json.dumps(data))
    with pytest.raises(ClbenchError) as frame_error:
        clbench.results_frame(copy)
    with pytest.raises(ClbenchError) as loader_error:
        load_results(copy)
    assert str(frame_error.value) == str(loader_error.value)
    assert len(clbench.results_frame(copy, strict=False).path.unique()) == 2 * len(SEEDS) - 1


def test_results_frame_is_a_lazy_public_name() -> None:
    assert "results_frame" in clbench.__all__ and clbench._LAZY["results_frame"][0] == "clbench.board.frame"


def test_the_board_writes_the_per_seed_values(folder: Path, tmp_path: Path) -> None:
    """<name>-seeds.csv: one row per run, each metric's value as in the result file, and the
    mean over seeds the board CSV's mean."""
    out = tmp_path / "board"
    paths = build_leaderboard(folder, out, "tiny")
    assert out / "tiny-seeds.csv" in paths
    seeds = pd.read_csv(out / "tiny-seeds.csv")
    assert list(seeds.columns[:len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert set(seeds.columns[len(RUN_COLUMNS):]) <= {e.name for e in METRICS}
    loaded = load_results(folder)
    assert len(seeds) == len(loaded)
    by_run = seeds.set_index(["strategy", "seed"])
    for data in loaded:
        row = by_run.loc[(data["label"], data["config"]["seed"])]
        assert row.threads == 1 and row.epochs == 1
        for name, m in data["metrics"].items():
            if m["value"] is None:
                assert pd.isna(row[name])
            else:
                assert row[name] == pytest.approx(m["value"], rel=1e-12, abs=0), name
    board = pd.read_csv(out / "tiny.csv").set_index("strategy")
    means = seeds.groupby("strategy").final_accuracy.mean()
    assert means.to_dict() == pytest.approx(board["final_accuracy_mean"].to_dict(), rel=1e-5)
