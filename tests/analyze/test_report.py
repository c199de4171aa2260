"""The report renders: every PNG opens, every src/href of report.html names a file written; and
it explains itself: tick labels that never overlap (rendered), probe inputs titled by class
name, retention that obeys the summary's cap, a how-to-read paragraph under every figure."""
from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from clbench.analyze.measures import FEATURE_FORGETTING_METRICS, RETENTION_CAP, FeatureMeasures
from clbench.analyze.report import (
    CHAR_EM,
    FIGURE_NOTES,
    GAP_EM,
    LINE_EM,
    TOP_HEADERS,
    capacity_by_experience_figure,
    capacity_heatmaps_figure,
    feature_images_figure,
    readout_curves_figure,
    tick_plan,
    top_feature_rows,
    write_report,
)
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


# ---------------------------------------------------------------- the report explains itself


def long_measures(T: int = 20, L: int = 6, m: int = 5, seed: int = 0) -> FeatureMeasures:
    """A run of ``T`` checkpoints and ``L`` layers (random capacities; feature 0 grows)."""
    g = torch.Generator().manual_seed(seed)
    cap = torch.rand(m, L, T, generator=g)
    cap[0] *= torch.linspace(1.0, 3.0, T)            # grows after its experience: rho_0 > 1
    serves = torch.arange(m) % (T - 1)
    return FeatureMeasures(
        after=list(range(T)), layers=[f"block{l}" for l in range(L)], capacity=cap,
        activation=torch.rand(m, generator=g), firing=torch.ones(m),
        class_mean=torch.rand(m, 2 * T, generator=g), exp_mean=torch.rand(m, T, generator=g),
        serves=serves, ref=serves.clone(), readout=torch.rand(m, T, generator=g),
        n_experiences=T)


def _overlaps(boxes: list) -> list[tuple[int, int]]:
    return [(a, b) for a in range(len(boxes)) for b in range(a + 1, len(boxes))
            if boxes[a].overlaps(boxes[b])]


def _tick_boxes(fig: Figure, axis: str) -> list[list]:
    """Per axes with ticks: the rendered boxes of its non-empty tick labels on ``axis``."""
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
        boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
        if boxes:
            out.append(boxes)
    return out


@pytest.mark.parametrize("T", [2, 5, 20, 60])
@pytest.mark.parametrize("make", ["by_experience", "heatmaps", "readout"])
def test_tick_labels_never_overlap(T: int, make: str) -> None:
    """Rendered with Agg: no two tick labels of an axis overlap, however many checkpoints."""
    fm = long_measures(T=T, L=6 if T < 60 else 24)
    top = [0, 1, 2, 3]
    fig = {"by_experience": lambda: capacity_by_experience_figure(fm),
           "heatmaps": lambda: capacity_heatmaps_figure(fm, top),
           "readout": lambda: readout_curves_figure(fm, top)}[make]()
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    for axis in ("x", "y") if make == "heatmaps" else ("x",):
        per_axes = _tick_boxes(fig, axis)
        assert per_axes
        for boxes in per_axes:
            assert _overlaps(boxes) == [], (make, axis, T)
    for ax in fig.axes:                        # nor does a label reach into another panel
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            if label.get_text():
                box = label.get_window_extent(renderer)
                assert not any(box.overlaps(o.get_window_extent(renderer))
                               for o in fig.axes if o is not ax), (make, label.get_text())
    # the first checkpoint is always labelled
    assert fig.axes[0].get_xticklabels()[0].get_text() == "exp0"


@pytest.mark.parametrize("n, axis_inches, fontsize", [(1, 1.0, 6), (5, 2.0, 6), (20, 1.8, 6),
                                                      (20, 5.0, 10), (100, 5.0, 10),
                                                      (60, 0.3, 6)])
@pytest.mark.parametrize("vertical", [False, True])
def test_tick_plan_shows_no_more_than_the_axis_holds(n: int, axis_inches: float, fontsize: float,
                                                     vertical: bool) -> None:
    labels = [f"exp{i}" for i in range(n)]
    shown, rotation = tick_plan(labels, axis_inches, fontsize, vertical=vertical)
    em = fontsize / 72
    along = (LINE_EM + GAP_EM) * em if (vertical or rotation) else \
        (max(map(len, labels)) * CHAR_EM + GAP_EM) * em
    assert shown[0] == 0 and shown == sorted(set(shown)) and shown[-1] < n
    assert len(shown) == 1 or len(shown) * along <= axis_inches
    steps = {b - a for a, b in zip(shown, shown[1:])}
    assert len(steps) <= 1                                     # evenly thinned
    if n * (max(map(len, labels)) * CHAR_EM + GAP_EM) * em <= axis_inches and not vertical:
        assert shown == list(range(n)) and rotation == 0       # all fit level: left alone


def test_probe_inputs_are_titled_by_class_name(digits_stream) -> None:
    fmnist = dataclasses.replace(digits_stream, name="split-fmnist")
    assert fmnist.class_names[:2] == ["T-shirt/top", "Trouser"] and len(fmnist.class_names) == 10
    assert digits_stream.class_names == [str(c) for c in range(10)]
    assert dataclasses.replace(digits_stream, name="my-own").class_names[3] == "class 3"
    probe = toy_probe(torch.rand(4, 1, 8, 8))                  # y = 0, 1, 2, 3
    fig = feature_images_figure(probe, 7, [[0, 1], [2, 3]], [0, 1], fmnist.class_names)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["T-shirt/top", "Trouser", "Pullover", "Dress"]
    fig = feature_images_figure(probe, 7, [[0, 1], [2, 3]], [0, 1])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()][0] == "class 0"
    assert not any("y=" in t for t in titles)


def test_retention_in_the_table_obeys_the_summarys_cap(tmp_path: Path) -> None:
    fm = long_measures(T=5, m=4)
    assert float(fm.retention[0]) > RETENTION_CAP               # feature 0 grew
    top = [i for i in range(4) if bool(fm.forgettable[i])]
    rows = top_feature_rows(fm, top)
    capped = [r[TOP_HEADERS.index(f"retention min(ρ, {RETENTION_CAP:g})")] for r in rows]
    raw = [r[TOP_HEADERS.index("ρ = C^(T-1) / C^(t_i), uncapped")] for r in rows]
    assert max(capped) <= RETENTION_CAP < max(raw)
    # the column's mean over the forgettable features is the summary's mean retention
    assert np.mean(capped) == pytest.approx(fm.summary()["ff_mean_capacity_retention"])
    html = write_report(tmp_path, fm, top, {i: [[0]] * 5 for i in top},
                        toy_probe(torch.zeros(4, 2)), fm.summary(), {"run": "r"}).read_text()
    assert f"capped at {RETENTION_CAP:g}" in html and "min(rho_i, 1)" in html  # the registry's


def test_every_figure_has_a_paragraph_saying_how_to_read_it(tmp_path: Path) -> None:
    fm = toy_measures(torch.rand(4, 1, 8, 8))
    top = fm.top_features(2)
    html = write_report(tmp_path, fm, top, {i: [[0, 1], [2]] for i in top},
                        toy_probe(torch.rand(4, 1, 8, 8)), fm.summary(), {}).read_text()
    imgs = re.findall(r"<img src='([^']+)'[^>]*></p><p class='note'>([^<]+)</p>", html)
    assert len(imgs) == html.count("<img ") == 3 + len(top)
    for src, note in imgs:
        assert len(note.split()) >= 20, (src, note)             # a paragraph, not a label
    assert set(FIGURE_NOTES) == {"capacity_by_experience", "capacity_heatmaps",
                                 "readout_curves", "feature_images", "feature_texts"}


def test_text_rows_are_shown_decoded_in_place_of_images(tmp_path: Path) -> None:
    """A text run's probe rows have no image: each top feature gets a table of its rows'
    decoded text per checkpoint, titled by task and explained, and no PNG of inputs."""
    fm = toy_measures(torch.rand(4, 1, 8, 8))
    top = fm.top_features(2)
    (tmp_path / "feature99_images.png").write_bytes(b"old")       # an earlier analysis's
    texts = ["Translate: cat", "Translate: <dog>", "Define: a pet", "Define: a bird"]
    page = write_report(tmp_path, fm, top, {i: [[0, 1], [2]] for i in top},
                        toy_probe(torch.zeros(4, 3, 5, dtype=torch.long)), fm.summary(), {},
                        class_names=["en-fr", "en-es", "definition", "supersense"],
                        texts=texts).read_text()
    assert page.count("<img ") == 3 and not list(tmp_path.glob("feature*_images.png"))
    tables = re.findall(r"<table class='texts'>(.*?)</table><p class='note'>([^<]+)</p>", page)
    assert len(tables) == len(top)
    for body, note in tables:
        assert note == html.escape(FIGURE_NOTES["feature_texts"])
        rows = re.findall(r"<tr><th>(exp\d+)</th>(.*?)</tr>", body)
        assert [r[0] for r in rows] == [f"exp{a}" for a in fm.after[:2]]
        cells = re.findall(r"<td><b>([^<]+)</b><br><span class='row'>([^<]*)</span>", rows[0][1])
        assert cells == [("en-fr", "Translate: cat"), ("en-es", "Translate: &lt;dog&gt;")]


# the seed-0 reports are the committed ones (.gitignore keeps the other seeds' and the null models')
COMMITTED_REPORTS = sorted((Path(__file__).resolve().parents[2] / "leaderboard")
                           .rglob("seed0.analysis/report.html"))


@pytest.mark.parametrize("html_path", COMMITTED_REPORTS,
                         ids=[str(p.parent.relative_to(p.parents[4])) for p in COMMITTED_REPORTS])
def test_committed_reports_are_made_by_todays_report_code(html_path: Path) -> None:
    """Issue 16: the committed analyze reports name the run (not a temporary path), link only
    files beside them and say under every figure how to read it."""
    from clbench.analyze.report import FIGURE_NOTES, TOP_NOTE

    text = html_path.read_text()
    files = check_report(html_path)
    assert "/tmp" not in text and "pytest-" not in text
    assert re.search(r"split-fmnist / (mlp|vit) / [\w@-]+, seed 0", text), "the run is named"
    pngs = [p for p in files if p.suffix == ".png"]
    notes = re.findall(r"<p class='note'>([^<]+)</p>", text)
    figure_notes = {html.escape(n) for n in FIGURE_NOTES.values()}
    assert pngs and sum(n in figure_notes for n in notes) == len(pngs)   # one under every figure
    assert notes.count(html.escape(TOP_NOTE)) == 1
    assert set(notes) <= figure_notes | {html.escape(TOP_NOTE)}


def test_there_are_committed_reports() -> None:
    assert len(COMMITTED_REPORTS) >= 6
