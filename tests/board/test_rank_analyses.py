"""Issue 16 item 4: `clbench rank` (and so a board) refuses to tabulate feature-forgetting
analyses made with different crosscoder settings; real runs, real `clbench analyze`."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from clbench.cli import main

RUN = ["run", "--stream", "split-digits", "--strategy", "naive", "--seeds", "0,1",
       "--set", "epochs=1", "--set", "model.hidden=32,32", "--set", "mono.when=off",
       "--keep-checkpoints", "--quiet", "--threads", "1"]
ANALYZE = ["--probe-size", "200", "--steps", "40", "--expansion", "2", "--top", "2",
           "--quiet"]


def call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    torch.set_num_threads(1)
    results = tmp_path_factory.mktemp("analyzed")
    assert call([*RUN, "--results", str(results)])[0] == 0
    seed0, seed1 = sorted(results.rglob("seed*.json"))
    assert call(["analyze", str(seed0), *ANALYZE, "--k", "8"])[0] == 0
    return results, seed0, seed1


@pytest.mark.parametrize("options, why", [
    pytest.param(["--k", "4"], "crosscoder.k=8", id="k"),
    pytest.param(["--k", "8", "--expansion", "3"], "crosscoder.expansion=2", id="dictionary-size"),
    pytest.param(["--k", "8", "--steps", "30"], "crosscoder.steps=40", id="steps"),
    pytest.param(["--k", "8", "--probe-size", "150"], "probe_size=200", id="probe"),
])
def test_analyses_with_other_crosscoder_settings_are_not_ranked_together(
        runs: tuple[Path, Path, Path], options: list[str], why: str) -> None:
    results, _, seed1 = runs
    assert call(["analyze", str(seed1), *ANALYZE, *options])[0] == 0
    rc, err = call(["rank", str(results), "--metric", "ff_mean_capacity_retention"])
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("clbench: error: results of stream split-digits / mlp hold "
                          "feature-forgetting analyses made with different settings"), err
    assert why in err and re.search(r"naive@\w+ seed 0: .*naive@\w+ seed 1: ", err), err


def test_analyses_made_alike_are_ranked(runs: tuple[Path, Path, Path]) -> None:
    """The crosscoder's seed, the device and how much the report shows change no setting."""
    results, _, seed1 = runs
    assert call(["analyze", str(seed1), *ANALYZE, "--k", "8", "--seed", "1", "--top", "1"])[0] == 0
    rc, err = call(["rank", str(results), "--metric", "ff_mean_capacity_retention"])
    assert rc == 0, err
