"""What a researcher expects of the command line: help with no verb, ``--version``, an instant
``--help`` (no torch, no Avalanche), ``run --device``, ``run --dry-run``, ``ls --json`` and
``ls strategies --params``. Real ``main()`` calls and real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import clbench
from clbench.cli import LISTS, main
from clbench.models import MODELS
from clbench.strategy_api import STRATEGIES
from clbench.streams import STREAMS
from clbench.suites import suite_names
from tests.errors import one_error_line as _one_error_line

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "avalanche", "timm", "torchvision")


def _clbench(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m clbench ARGV`` importing this checkout's clbench."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "clbench", *argv], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_no_verb_prints_help_and_exits_0(tmp_path: Path) -> None:
    p = _clbench(cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: clbench") and "clbench run" in p.stdout
    assert not any(tmp_path.iterdir()), "no verb must run nothing"


def test_version(tmp_path: Path) -> None:
    p = _clbench("--version", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"clbench {clbench.__version__}"


VERBS = [[], ["run"], ["ls"], ["rank"], ["analyze"], ["leaderboard"], ["check"], ["submit"],
         ["sae", "fit"], ["sae", "export"], ["schema"]]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "top")
def test_help_imports_neither_torch_nor_avalanche(verb: list[str], tmp_path: Path) -> None:
    """Every verb's ``--help`` is answered from argparse alone (the verbs import lazily)."""
    code = ("import sys\nfrom clbench.cli import main\n"
            f"try:\n    main({[*verb, '--help']!r})\nexcept SystemExit as e:\n    assert e.code == 0\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    assert "usage: clbench" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "[]", f"--help imported {p.stdout.splitlines()[-1]}"


def test_help_answers_at_once(tmp_path: Path) -> None:
    start = time.perf_counter()
    p = _clbench("--help", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert p.returncode == 0, p.stderr
    assert elapsed < 2.0, f"clbench --help took {elapsed:.2f} s (torch takes ~1.5 s to import)"


def test_import_clbench_is_light_and_its_names_still_resolve(tmp_path: Path) -> None:
    code = ("import sys, clbench\nassert 'torch' not in sys.modules, 'import clbench loaded torch'\n"
            "assert callable(clbench.run) and clbench.resolve_config and clbench.STRATEGIES\n"
            "assert set(clbench.__all__) <= set(dir(clbench))\nprint('ok')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


# --- ls ------------------------------------------------------------------------------------------

def test_ls_json_lists_every_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "--json"]) == 0
    lists = json.loads(capsys.readouterr().out)
    assert list(lists) == list(LISTS)
    names = {w: [e["name"] for e in lists[w]] for w in LISTS}
    assert names["streams"] == sorted(STREAMS.names())
    assert names["strategies"] == sorted(STRATEGIES.names())
    assert names["models"] == sorted(MODELS.names())
    assert names["suites"] == suite_names()
    for e in lists["strategies"]:
        spec = STRATEGIES.get(e["name"]).obj
        assert {k: p["default"] for k, p in e["params"].items()} == json.loads(
            json.dumps(spec.defaults, default=str))


def test_ls_one_list_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "metrics", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert {m["name"] for m in metrics} >= {"final_accuracy", "forgetting_max"}
    assert {m["direction"] for m in metrics} <= {"higher", "lower"}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_ls_strategies_params_shows_every_parameter_and_family_default(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "strategies", "--params"]) == 0
    out = capsys.readouterr().out.splitlines()
    spec = STRATEGIES.get(name).obj
    block = out[out.index(next(line for line in out if line.split()[0] == name)) + 1:]
    for k, v in spec.defaults.items():
        line = next((line for line in block if line.strip().startswith(f"{name}.{k} = ")), None)
        assert line is not None, f"{name}.{k} not listed"
        assert repr(v) in line
        for family, d in spec.family_defaults.items():
            if k in d:
                assert f"{family}: {d[k]!r}" in line


def test_params_only_with_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "models", "--params"]) == 2
    assert "clbench ls strategies --params" in _one_error_line(capsys.readouterr().err)


# --- run --dry-run and --device -------------------------------------------------------------------

def test_dry_run_lists_the_cells_and_runs_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    grid = ["run", "--stream", "split-digits", "--strategy", "naive,ewc", "--seeds", "0,1",
            "--set", "epochs=1", "--results", str(results), "--quiet"]
    assert main([*grid, "--dry-run", "--set", "ewc.ewc_lambda=50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not results.exists(), "a dry run must write nothing"
    assert len(out) == 5 and out[-1].startswith("4 cells: 4 to run, 0 done")
    assert [line.split()[0] for line in out[:4]] == ["run"] * 4
    assert [line.split()[3].partition("@")[0] for line in out[:4]] == ["naive", "ewc"] * 2
    # one real cell, then the dry run marks it done
    assert main(["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
                 "--set", "epochs=1", "--results", str(results), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main([*grid, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("4 cells: 3 to run, 1 done")
    done = [line for line in out if line.startswith("done")]
    assert len(done) == 1 and "naive" in done[0] and done[0].endswith("seed0.json")


def test_dry_run_still_rejects_a_typo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run", "--stream", "split-digits", "--strategy", "naive", "--set", "epoch=1",
                 "--results", str(tmp_path), "--dry-run"]) == 2
    assert "did you mean 'epochs'" in _one_error_line(capsys.readouterr().err)


def test_device_cpu_is_the_default_cell(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
            "--results", str(tmp_path), "--dry-run"]
    assert main(base) == 0
    default = capsys.readouterr().out
    assert main([*base, "--device", "cpu"]) == 0
    assert capsys.readouterr().out == default


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_one_clear_error(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    assert main(["run", "--stream", "split-digits", "--strategy", "naive", "--device", "cuda",
                 "--results", str(tmp_path), "--dry-run"]) == 2
    assert "--device cuda: this machine has no usable CUDA GPU" in _one_error_line(
        capsys.readouterr().err)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cuda_reaches_the_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from clbench.run.plan import plan
    from clbench.suites import Cell
    cfg = plan([Cell("split-digits", "mlp", "naive", 0)], ["device=cuda"], tmp_path)[0].config
    assert cfg.train["device"] == "cuda"
    assert main(["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0",
                 "--device", "cuda", "--results", str(tmp_path), "--dry-run"]) == 0
