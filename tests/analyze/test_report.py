"""The report renders: every PNG opens, every src/href of report.html names a file written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from clbench.analyze.measures import FEATURE_FORGETTING_METRICS
from clbench.analyze.report import write_report
from tests.analyze.test_measures import toy_measures, toy_probe


def check_report(html_path: Path) -> list[Path]:
    """Assert every src/href of the page exists next to it and every PNG opens; return them."""
    text = html_path.read_text()
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", text)
    assert refs, text
    files = []
    for ref in refs:
        assert not ref.startswith(("/", "http")), ref        # relative paths only
        path = html_path.parent / ref
        assert path.is_file(), ref
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                assert im.size[0] > 50 and im.size[1] > 50
        files.append(path)
    return files


@pytest.mark.parametrize("inputs", [torch.rand(4, 1, 8, 8), torch.rand(4, 3, 8, 8),
                                    torch.randn(4, 40)], ids=["gray", "rgb", "1d"])
def test_report_renders_and_links_only_existing_files(inputs: torch.Tensor, tmp_path: Path) -> None:
    fm = toy_measures(inputs)
    top = fm.top_features(3)
    images = {i: [[0, 1, 2], [3, 1]] for i in top}         # rows per checkpoint, ragged is fine
    summary = fm.summary()
    html = write_report(tmp_path / "out", fm, top, images, toy_probe(inputs), summary,
                        {"run": "toy <run>"})
    files = check_report(html)
    names = {p.name for p in files}
    assert {"capacity_by_experience.png", "capacity_heatmaps.png", "readout_curves.png"} <= names
    assert {f"feature{i}_images.png" for i in top} <= names
    text = html.read_text()
    assert "toy &lt;run&gt;" in text and all(m in text for m in FEATURE_FORGETTING_METRICS)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not [n for n in written if n.startswith(".")]      # no temp file left behind
    assert set(written) == names | {"report.html"}


def test_report_without_readout_has_no_readout_figure(tmp_path: Path) -> None:
    fm = toy_measures()
    fm.readout = None
    html = write_report(tmp_path, fm, [0], {0: [[0], [1]]}, toy_probe(torch.zeros(4, 2)),
                        fm.summary(), {})
    names = {p.name for p in check_report(html)}
    assert "readout_curves.png" not in names and "capacity_heatmaps.png" in names


@pytest.mark.parametrize("flags, shown", [
    (["collapsed:exp4"], "Flagged run: collapsed:exp4"),
    ([], "Run flags: none."),
    (None, "Run flags: not recorded"),
])
def test_report_shows_the_run_flags(flags: list[str] | None, shown: str, tmp_path: Path) -> None:
    fm = toy_measures()
    html = write_report(tmp_path, fm, [0], {0: [[0], [1]]}, toy_probe(torch.zeros(4, 2)),
                        fm.summary(), {}, flags=flags)
    text = html.read_text()
    assert shown in text and ("class='flag'" in text) == bool(flags)
    assert text.index(shown) < text.index("<h2>Summary</h2>")    # above the numbers
    assert "null model" not in text.lower()


def test_report_of_the_null_model_says_so(tmp_path: Path) -> None:
    fm = toy_measures()
    html = write_report(tmp_path, fm, [0], {0: [[0], [1]]}, toy_probe(torch.zeros(4, 2)),
                        fm.summary(), {}, flags=[], null=True)
    text = html.read_text()
    assert "Feature-level forgetting (null model)" in text and "<b>Null model</b>" in text


def test_report_removes_an_earlier_analysis_feature_images(tmp_path: Path) -> None:
    (tmp_path / "feature99_images.png").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    fm = toy_measures()
    write_report(tmp_path, fm, [0], {0: [[0], [1]]}, toy_probe(torch.zeros(4, 2)), fm.summary(), {})
    assert not (tmp_path / "feature99_images.png").exists()
    assert (tmp_path / "feature0_images.png").is_file() and (tmp_path / "notes.txt").is_file()
