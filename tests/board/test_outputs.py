"""The committed leaderboard is what its results generate; the verb's outputs and errors."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.board.leaderboard import build_leaderboard, in_suite, means_matrix
from clbench.board.rank import REFERENCE, rank_results, render
from clbench.results import load_results
from clbench.board.stats import friedman_nemenyi, significant_pairs
from clbench.suites import load_suite

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "leaderboard"
GENERATED = ["README.md", "cpu-v1.csv", "cpu-v1-seeds.csv", "forgetting.md", "cd-diagram.png",
             "pareto-state.png", "pareto-time.png", "index.html", "clbench-leaderboard.json"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1 --out-dir TMP`, run from the repo root
    (the README names the results folder as given)."""
    out = tmp_path_factory.mktemp("board")
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    try:
        assert main(["leaderboard", "leaderboard/results", "--name", "cpu-v1", "--suite", "cpu-v1",
                     "--out-dir", str(out)]) == 0
    finally:
        mp.undo()
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_committed_leaderboard_is_up_to_date(regenerated: Path, name: str) -> None:
    """Byte-for-byte: regenerate with `clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1`."""
    fresh, committed = regenerated / name, BOARD / name
    assert committed.is_file(), f"{committed} missing; run clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1"
    assert same_output(fresh, committed), (
        f"leaderboard/{name} is stale; run: clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1")


#: a PNG may differ from the committed one in this many pixels (anti-aliasing of a marker at a
#: sub-pixel boundary differs between machines: 3 of 1.07M pixels seen); a changed number moves
#: a marker or a label, thousands of pixels
PNG_PIXELS = 50


def same_output(fresh: Path, committed: Path) -> bool:
    """Text files byte for byte; PNGs pixel for pixel, up to :data:`PNG_PIXELS` pixels."""
    if fresh.read_bytes() == committed.read_bytes():
        return True
    if fresh.suffix != ".png":
        return False
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(fresh).convert("RGB"))
    b = np.asarray(Image.open(committed).convert("RGB"))
    return a.shape == b.shape and int((a != b).any(axis=-1).sum()) <= PNG_PIXELS


def test_forgetting_table_is_ranked_on_forgetting(regenerated: Path) -> None:
    text = (regenerated / "forgetting.md").read_text()
    body = render(rank_results(in_suite(load_results(BOARD / "results"), "cpu-v1"), "forgetting_max"), "md")
    assert text.endswith(body) and "Ranked on `forgetting_max` (lower is better)" in text


def test_readme_reports_the_tests_and_shared_ranks(regenerated: Path) -> None:
    text = (regenerated / "README.md").read_text()
    tables = rank_results(in_suite(load_results(BOARD / "results"), "cpu-v1"))
    test = friedman_nemenyi(means_matrix(tables))
    assert f"chi2_F = {test.statistic:.2f}" in text and f"CD = {test.q_alpha:.3f}" in text
    # joint and cumulative are reference rows (upper bounds), not in the test
    assert test.k == len(set(load_suite("cpu-v1").strategies) - REFERENCE) and test.n_streams == 4
    assert not set(test.mean_ranks.index) & REFERENCE
    # the pairs named are exactly those whose mean ranks lie further apart than CD; with only
    # 4 streams the Nemenyi test separates few of them, and the best is among them
    pairs = [(a, b) for a in test.mean_ranks.index for b in test.mean_ranks.index
             if test.mean_ranks[b] - test.mean_ranks[a] > test.cd]
    assert pairs and all(test.differ(a, b) for a, b in pairs)
    shown = "; ".join(f"{a} > {b}" for a, b in significant_pairs(test))
    assert sorted(significant_pairs(test)) == sorted(pairs)
    assert f"Pairs that differ (mean ranks further apart than CD): {shown}." in text
    assert test.mean_ranks.index[0] in {a for a, _ in pairs}
    digits = tables.per_stream["split-digits"]
    # der 95.1 ± 1.1, replay 94.0 ± 0.8, gdumb 93.2 ± 1.7 and replay+ewc 92.4 ± 2.1 overlap one
    # another: ranks 1 to 4, each CI rank 4 (the worst place the intervals allow)
    top = ["der", "replay", "gdumb", "replay+ewc"]
    assert digits.loc[top, ("rank", "")].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert digits.loc[top, ("ci_rank", "")].tolist() == [4.0] * 4
    assert digits.loc[["cumulative", "joint"], ("rank", "")].isna().all()
    section = text.split("### split-digits", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| 2 "))
    assert re.match(r"\| 2\s+\| replay\s+\| 4\s+\|", row), row
    assert re.search(r"^\| -\s+\| joint \(reference\)\s+\| -\s+\|", section, re.M)
    for png in ("cd-diagram.png", "pareto-state.png", "pareto-time.png"):
        assert f"]({png})" in text


def test_leaderboard_verb_on_a_small_folder(tmp_path: Path) -> None:
    """Three strategies on two streams: every file written; the PNGs are real PNGs."""
    src = tmp_path / "results"
    for stream in ("split-digits", "split-mnist1d"):
        for s in ("naive", "replay", "der"):
            shutil.copytree(BOARD / "results" / stream / "mlp" / s, src / stream / "mlp" / s)
    paths = build_leaderboard(src, tmp_path / "out", name="mini")
    assert sorted(p.name for p in paths) == sorted(["README.md", "mini.csv", "mini-seeds.csv", "forgetting.md",
                                                    "cd-diagram.png", "clbench-leaderboard.json",
                                                    "pareto-state.png", "pareto-time.png",
                                                    "index.html"])
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    html = (tmp_path / "out" / "index.html").read_text()
    assert html.count('<table class="sortable"') == 3 + 2 and "http" not in html  # + protocol
    assert not list((tmp_path / "out").glob(".*")), "temp files left behind"


def test_leaderboard_verb_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clbench: error: ") and err.count("\n") == 1 and "no such results" in err
