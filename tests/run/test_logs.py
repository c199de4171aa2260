"""``clbench run --log``: real tiny runs whose Avalanche loggers write curves beside the result."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.results import load_result
from clbench.run.logs import LOGGERS, log_dir, wandb_mode
from tests.errors import one_error_line as _one_error_line

RUN = ["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0", "--threads", "1",
       "--set", "epochs=1", "--quiet"]
EXPERIENCES = 5   # split-digits


def _run(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main([*RUN, *args])


def _result(root: Path) -> Path:
    (path,) = root.rglob("seed0.json")
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One cell run with --log csv,tensorboard, and the same cell run without --log."""
    with_logs, plain = tmp_path_factory.mktemp("logged"), tmp_path_factory.mktemp("plain")
    assert _run("--results", str(with_logs), "--log", "csv,tensorboard") == 0
    assert _run("--results", str(plain)) == 0
    return _result(with_logs), _result(plain)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_logs_sit_beside_the_result_and_change_nothing_in_it(logged: tuple[Path, Path]) -> None:
    path, plain = logged
    assert log_dir(path) == path.parent / "seed0.logs"
    assert sorted(p.name for p in log_dir(path).iterdir()) == ["csv", "tensorboard"]
    a, b = load_result(path), load_result(plain)
    assert a["accuracy_matrix"] == b["accuracy_matrix"] and set(a) == set(b)
    assert "logs" not in json.dumps(a["config"])


def test_csv_has_a_training_loss_per_experience_and_the_eval_accuracies(logged: tuple[Path, Path]) -> None:
    """training_results.csv: one row per experience (1 epoch each), the loss a positive number;
    eval_results.csv: after training experience i, the accuracy on experience j is R[i][j]."""
    path, _ = logged
    train = _rows(log_dir(path) / "csv" / "training_results.csv")
    assert [int(r["training_exp"]) for r in train] == list(range(EXPERIENCES))
    losses = [float(r["training_loss"]) for r in train]
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    R = load_result(path)["accuracy_matrix"]
    evals = [r for r in _rows(log_dir(path) / "csv" / "eval_results.csv") if r["training_exp"] != "None"]
    assert len(evals) == EXPERIENCES * EXPERIENCES
    for r in evals:
        assert float(r["eval_accuracy"]) == pytest.approx(R[int(r["training_exp"])][int(r["eval_exp"])],
                                                          abs=1e-4)
        assert math.isfinite(float(r["eval_loss"]))


def test_tensorboard_events_hold_the_loss_scalars(logged: tuple[Path, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, _ = logged
    ea = EventAccumulator(str(log_dir(path) / "tensorboard"))
    ea.Reload()
    epoch = [e.value for e in ea.Scalars("Loss_Epoch/train_phase/train_stream/Task000")]
    assert len(epoch) == EXPERIENCES and all(math.isfinite(v) and v > 0 for v in epoch)
    assert len(ea.Scalars("Loss_MB/train_phase/train_stream/Task000")) > EXPERIENCES
    train = _rows(log_dir(path) / "csv" / "training_results.csv")
    assert epoch == pytest.approx([float(r["training_loss"]) for r in train], abs=1e-4)


def test_a_rerun_replaces_its_old_logs(tmp_path: Path) -> None:
    assert _run("--results", str(tmp_path), "--log", "tensorboard") == 0
    assert _run("--results", str(tmp_path), "--log", "tensorboard", "--no-resume") == 0
    events = list((log_dir(_result(tmp_path)) / "tensorboard").iterdir())
    assert len(events) == 1, events


def test_wandb_runs_offline_into_the_log_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline (no network here): the run's file under seed0.logs/wandb holds the logged
    training-loss key (W&B's offline file stores history keys as plain protobuf strings)."""
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert _run("--results", str(tmp_path / "results"), "--log", "wandb") == 0
    (run_file,) = (log_dir(_result(tmp_path / "results")) / "wandb").rglob("offline-run-*/*.wandb")
    assert b"Loss_Epoch/train_phase/train_stream/Task000" in run_file.read_bytes()


def test_wandb_is_offline_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_mode() == "online"


@pytest.mark.parametrize("value, says", [("csvv", "did you mean 'csv'"), (",", "name a logger"),
                                         ("csv,mlflow", "unknown logger 'mlflow'")])
def test_a_bad_log_value_is_one_line_before_any_run(tmp_path: Path, value: str, says: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*RUN, "--results", str(tmp_path / "r"), "--log", value]) == 2
    assert says in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", [k for k, (module, _) in LOGGERS.items() if module])
def test_a_missing_logger_package_names_the_pip_command(kind: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The package made unimportable the way Python documents (``sys.modules[name] = None``)."""
    module, install = LOGGERS[kind]
    monkeypatch.setitem(sys.modules, module, None)
    assert main([*RUN, "--results", str(tmp_path / "r"), "--log", f"csv,{kind}"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--log {kind} needs the {module} package" in line and str(install) in line
    assert not (tmp_path / "r").exists()
