"""One atomic writer for every file clbench produces, all readable by a lab (mode 0644).

Before, six hand copies of the write-then-rename dance existed and several left files 0600
(``mkstemp``'s mode): a result, a checkpoint or a report shared on a group server was unreadable
to everyone but its writer.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import pytest
import torch
from matplotlib.figure import Figure

from clbench.analyze.report import save_figure
from clbench.atomic import FILE_MODE, write_atomic, write_text_atomic
from clbench.board.plots import save_png
from clbench.checkpoints import save_state_atomic
from clbench.cli import main
from clbench.results import write_json_atomic
from clbench.sae.topk import TopKSAE


def _figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


WRITERS: dict[str, Callable[[Path], object]] = {
    "text": lambda p: write_text_atomic(p, "x"),
    "json (results, baselines)": lambda p: write_json_atomic(p, {"a": 1}),
    "checkpoint": lambda p: save_state_atomic({"w": torch.zeros(2)}, p),
    "leaderboard figure": lambda p: save_png(_figure(), p),
    "analysis figure": lambda p: save_figure(_figure(), p),
    "SAE / crosscoder file": lambda p: TopKSAE(d_in=4, n_latents=8, k=2).save(p),
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_writer_leaves_a_0644_file_and_no_temp(kind: str, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "out.bin"
        WRITERS[kind](path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]


def test_rank_out_is_written_0644(tmp_path: Path) -> None:
    results = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
    out = tmp_path / "table.md"
    assert main(["rank", str(results), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and out.read_text().startswith("Ranked on")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_text_atomic(path, "old")

    def boom(f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
