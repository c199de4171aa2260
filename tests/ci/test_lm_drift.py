"""``ci/lm_drift.py``: relative drift by hand, and the page on a real tiny text run kept with
checkpoints (a tiny random Llama, text-v1 files in the real Debian formats), against its null
copy (every checkpoint replaced by the first: nothing moved, so every drift reads 0)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.analyze.test_cli_analyze import call
from tests.sae.test_lm_fit import files  # noqa: F401  (data with glosses outside the tasks)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import lm_drift  # noqa: E402

SAE = ["--sae", "sae_steps=5", "--sae", "corpus_passages=0", "--sae", "corpus_glosses=6",
       "--sae", "expansion=2", "--sae", "k=4"]


@pytest.fixture(scope="module")
def text_run(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """naive on text-v1 with the tiny Llama, the top 2 of 4 blocks trained, checkpoints kept."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("driftrun")
    argv = ["run", "--stream", "text-v1", "--model", "smollm2-135m", "--strategy", "naive",
            "--seeds", "0", "--keep-checkpoints", "--results", str(root), "--quiet",
            "--data-root", str(files["data"]), "--set", f"model.weights={files['lm']}",
            "--set", "epochs=2", "--set", "model.train_blocks=2", "--set", "stream.n_train=2",
            "--set", "stream.n_test=4", "--set", "stream.n_prose=3"]
    rc, _, err = call(argv)
    assert rc == 0, err
    return next(root.rglob("seed0.json"))


def test_relative_drift_by_hand() -> None:
    before = torch.tensor([[0.0, 0.0], [2.0, 0.0]])      # spread about the mean: sqrt(2)
    after = before + torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert lm_drift.relative_drift(after, before, centre=True) == pytest.approx(1.0)
    assert lm_drift.relative_drift(after, before, centre=False) == pytest.approx(2 ** 0.5 / 2)
    assert lm_drift.relative_drift(before, before, centre=True) == 0.0


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The SAE fitted here goes to a cache of its own."""
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _null_copy(run: Path, dest: Path) -> Path:
    """The run with every checkpoint overwritten by the first."""
    shutil.copytree(run.parent, dest)
    out = dest / run.name
    ckpts = sorted((dest / f"{run.stem}.ckpt").glob("exp*.pt"))
    for c in ckpts[1:]:
        shutil.copyfile(ckpts[0], c)
    return out


def test_the_page_reads_drift_in_a_trained_run_and_none_in_its_null(
        text_run: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.set_num_threads(1)
    null = _null_copy(text_run, tmp_path / "null")
    out = tmp_path / "drift.md"
    rc = lm_drift.main([str(text_run), str(null), "--layers", "block2,block3,norm",
                        "--sae-layer", "block2", "--rows", "4", "--out", str(out), *SAE])
    assert rc == 0
    page = out.read_text()
    rows = [line for line in page.splitlines() if line.startswith("| naive")]
    assert len(rows) == 4                                    # 2 runs x 2 sections
    real, nulled = ([float(v) for v in r.strip("|").split("|")[3:]] for r in rows[:2])
    assert len(real) == 4 and all(v > 0 for v in real)       # block2, block3, norm, SAE f
    assert nulled == [0.0] * 4


@pytest.mark.parametrize("argv, says", [
    (["--rows", "1"], "--rows 1: need at least 2"),
    (["--layers", "block0"], "not in the trained part"),
    (["--sae", "width=3"], "--sae 'width=3': give KEY=INT"),
])
def test_bad_input_is_one_line(text_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                               argv: list[str], says: str) -> None:  # noqa: F811
    out = tmp_path / "x.md"
    rc = lm_drift.main([str(text_run), "--out", str(out), *SAE, *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and says in err and len(err.splitlines()) == 1 and not out.exists()
