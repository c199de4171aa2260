"""Stage 5 of ``clbench analyze``: ``report.html`` and its PNGs (matplotlib's Agg renderer).

    >>> from clbench.analyze.report import write_report
    >>> html = write_report(out_dir, fm, top, images, probe, summary, info)   # out_dir/report.html

Figures, each written atomically (temp file + rename) into ``out_dir``:

* ``capacity_by_experience.png``: mean capacity per checkpoint ``C_i^t`` of the features
  serving each experience (one line per experience);
* ``capacity_heatmaps.png``: ``c_i^(l,t)`` as a layer x checkpoint heatmap for each top feature;
* ``readout_curves.png``: readout ``r_i^t`` over checkpoints for each top feature (when the
  head-input layer was analyzed);
* ``feature<i>_images.png``: per top feature, one row per checkpoint with the probe inputs that
  drive the feature most at that checkpoint (images, or line plots for 1-d inputs). Text rows
  (a language model's run, :mod:`clbench.analyze.text`) have no image: given ``texts``, the
  page shows the same rows as a table of decoded text instead (no PNG).

Each figure is followed by a paragraph saying how to read it (:data:`FIGURE_NOTES`). Tick
labels are thinned (and turned upright) to what their axis holds (:func:`tick_plan`), so 20
checkpoints do not print over each other; probe inputs are titled by class name
(:attr:`clbench.streams.Stream.class_names`, e.g. ``Coat``), not by label number. The per-feature
table shows retention capped at 1, as ``ff_mean_capacity_retention`` averages it
(:mod:`clbench.metrics.registry`), beside the uncapped ratio. The page names the run by stream,
model, strategy and seed and links its result file by a path relative to the page.

The page opens with the run's flags (:mod:`clbench.metrics.flags`): a run flagged
``collapsed:exp<e>`` or ``dead:<layer>@exp<e>`` is marked in red above the summary, since its
capacities describe a broken network, not forgetting. A null-model analysis (``--null``) says
so in its title. The HTML page links only files this function wrote, by relative path;
``feature<i>_images.png`` files of an earlier analysis in the same folder are removed.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from clbench.analyze.measures import RETENTION_CAP, FeatureMeasures
from clbench.analyze.probe import Probe
from clbench.atomic import write_atomic, write_text_atomic
from clbench.metrics.registry import metric


def save_figure(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG at ``path``, written atomically (:mod:`clbench.atomic`).

    Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so PNGs are drawn by the
    Agg renderer and no global backend or figure registry is touched.
    """
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100,
                                                    bbox_inches="tight"))


def _ckpt_labels(after: list[int]) -> list[str]:
    return [f"exp{a}" for a in after]


#: width of an average character and height of a text line, in units of the font size (DejaVu
#: Sans, matplotlib's default, with margin), and the gap kept between neighbouring labels
CHAR_EM, LINE_EM, GAP_EM = 0.65, 1.25, 0.5


def tick_plan(labels: list[str], axis_inches: float, fontsize: float,
              vertical: bool = False) -> tuple[list[int], int]:
    """Which tick labels an axis ``axis_inches`` long can show without overlap, and their
    rotation: ``(indices, degrees)``.

    Along a horizontal axis a label takes ``len * CHAR_EM`` font sizes, upright (rotated 90)
    ``LINE_EM``; along a vertical axis ``LINE_EM``; each plus ``GAP_EM`` (1 pt = 1/72 inch).
    All labels level if they fit; else upright; else every ``s``-th, from the first, with the
    smallest stride ``s`` whose labels fit: ``n_shown * footprint <= axis_inches``.
    """
    n = len(labels)
    if n == 0:
        return [], 0
    em = fontsize / 72.0
    line = (LINE_EM + GAP_EM) * em
    if not vertical:
        level = (max(len(t) for t in labels) * CHAR_EM + GAP_EM) * em
        if n * level <= axis_inches:
            return list(range(n)), 0
    rotation = 0 if vertical else 90
    capacity = max(1, int(axis_inches // line))
    stride = -(-n // capacity)
    return list(range(0, n, stride)), rotation


def set_ticks(ax: Any, axis: str, labels: list[str], fontsize: float = 10.0) -> list[int]:
    """Put ``labels`` at positions ``0..n-1`` on ``ax``'s ``axis`` ("x" or "y"), thinned and
    rotated by :func:`tick_plan` for the axis's length in the figure as laid out now (call it
    after adding colour bars). Returns the indices shown."""
    fig = ax.get_figure()
    box = ax.get_position()
    length = box.width * fig.get_figwidth() if axis == "x" else box.height * fig.get_figheight()
    shown, rotation = tick_plan(labels, length, fontsize, vertical=(axis == "y"))
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(shown, [labels[i] for i in shown], fontsize=fontsize, rotation=rotation)
    return shown


#: how to read each figure, printed under it in the report (keyed by the PNG's stem)
FIGURE_NOTES = {
    "capacity_by_experience": (
        "One line per experience e: the mean capacity C_i^t (the norm of the feature's decoder "
        "over the analyzed layers at checkpoint t) of the crosscoder features that serve e, "
        "i.e. that fire most on e's probe inputs. A line appears once its experience has been "
        "trained. A line that falls after its own experience is that experience's features "
        "losing their share of the network: feature-level forgetting. A flat line is retained."),
    "capacity_heatmaps": (
        "One panel per top feature (the most active ones): its capacity c_i^(l,t) in each layer "
        "(rows, last layer on top) at each checkpoint (columns); one colour scale for all "
        "panels. Bright cells that fade to the right are a feature being overwritten; a bright "
        "cell moving down to an earlier layer is a feature that moved to a middle layer."),
    "readout_curves": (
        "For each top feature, how strongly the classifier head reads it at each checkpoint: "
        "the cosine between the feature's direction in the head-input layer and the head rows "
        "of the classes it fires for (0 where the feature is absent there). A drop after the "
        "feature's own experience means the head no longer uses it even if the feature itself "
        "survives (compare its heatmap)."),
    "feature_images": (
        "One row per checkpoint: the probe inputs that drive this feature most at that "
        "checkpoint, each titled by its class. Rows that keep showing the same classes mean "
        "the feature still encodes the same thing; a change of classes down the rows means it "
        "was repurposed."),
    "feature_texts": (
        "One row per checkpoint: the probe rows (prompt, gold answer) that drive this feature "
        "most at that checkpoint, decoded, each marked with its task. Rows that keep showing "
        "the same task and kind of text mean the feature still encodes the same thing; a "
        "change down the rows means it was repurposed."),
}


def _note(stem: str) -> str:
    key = "feature_images" if stem.startswith("feature") and stem.endswith("_images") else stem
    return f"<p class='note'>{html.escape(FIGURE_NOTES[key])}</p>"


def capacity_by_experience_figure(fm: FeatureMeasures) -> Figure:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for e, row in enumerate(fm.capacity_by_experience()):
        if row[0] is not None:
            ax.plot(range(len(fm.after)), row, marker="o", label=f"serves exp{e}")
    set_ticks(ax, "x", _ckpt_labels(fm.after))
    ax.set_xlabel("checkpoint (after experience)")
    ax.set_ylabel("mean capacity $C_i^t$")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("Capacity of features, grouped by the experience they serve")
    return fig


def capacity_heatmaps_figure(fm: FeatureMeasures, top: list[int]) -> Figure:
    cols = min(4, len(top))
    rows = -(-len(top) // cols)
    height = (0.5 * len(fm.layers) + 1.2) * rows
    fig = Figure(figsize=(2.6 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = float(fm.capacity[top].max())
    for ax, i in zip(axes.flat, top):
        im = ax.imshow(fm.capacity[i].numpy()[::-1], aspect="auto", cmap="viridis", vmin=0,
                       vmax=vmax)
        ax.set_title(f"feature {i} (serves exp{int(fm.serves[i])})", fontsize=8)
    for ax in list(axes.flat)[len(top):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="capacity $c_i^{(l,t)}$")
    for j, ax in enumerate(list(axes.flat)[:len(top)]):   # after the colour bar: final sizes
        set_ticks(ax, "x", _ckpt_labels(fm.after), fontsize=6)
        if j % cols == 0:                       # layer names once a row, not over a neighbour
            set_ticks(ax, "y", fm.layers[::-1], fontsize=6)
        else:
            ax.set_yticks([])
    return fig


def readout_curves_figure(fm: FeatureMeasures, top: list[int]) -> Figure:
    assert fm.readout is not None
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for i in top:
        ax.plot(range(len(fm.after)), fm.readout[i].numpy(), marker="o",
                label=f"{i} (exp{int(fm.serves[i])})")
    ax.axhline(0, color="grey", lw=0.5)
    set_ticks(ax, "x", _ckpt_labels(fm.after))
    ax.set_xlabel("checkpoint (after experience)")
    ax.set_ylabel("readout $r_i^t$ (cosine)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Readout of top features by the head")
    return fig


def _show_input(ax: Any, x: Tensor) -> None:
    a = x.detach().float().numpy()
    if a.ndim == 3:  # [C, H, W]
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
        ax.imshow(a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1),
                  cmap="gray" if a.shape[0] == 1 else None)
    else:
        ax.plot(a.reshape(-1), lw=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def class_label(y: int, class_names: list[str] | None) -> str:
    """Label ``y``'s name, or ``"class y"`` without names."""
    return class_names[y] if class_names is not None and 0 <= y < len(class_names) else f"class {y}"


def feature_images_figure(probe: Probe, feature: int, rows: list[list[int]], after: list[int],
                          class_names: list[str] | None = None) -> Figure:
    """``rows[t]``: probe row indices driving ``feature`` most at checkpoint ``t``; each input
    is titled by its class name (``class_names[y]``)."""
    n = max(len(r) for r in rows)
    fig = Figure(figsize=(1.1 * n, 1.2 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for t, picks in enumerate(rows):
        for j in range(n):
            ax = axes[t, j]
            if j < len(picks):
                _show_input(ax, probe.x[picks[j]])
                ax.set_title(class_label(int(probe.y[picks[j]]), class_names), fontsize=6)
            else:
                ax.axis("off")
        axes[t, 0].set_ylabel(f"exp{after[t]}", fontsize=7)
    fig.suptitle(f"feature {feature}: top probe inputs per checkpoint", fontsize=8)
    return fig


def feature_texts_table(probe: Probe, rows: list[list[int]], after: list[int], texts: list[str],
                        class_names: list[str] | None = None) -> str:
    """HTML table: one row per checkpoint, the decoded probe rows ``texts[r]`` of ``rows[t]``
    (those driving the feature most at checkpoint ``t``), each under its task's name."""
    body = []
    for t, picks in enumerate(rows):
        cells = "".join(
            f"<td><b>{html.escape(class_label(int(probe.y[r]), class_names))}</b><br>"
            f"<span class='row'>{html.escape(texts[r])}</span></td>" for r in picks)
        body.append(f"<tr><th>exp{after[t]}</th>{cells}</tr>")
    return "<table class='texts'>" + "".join(body) + "</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def flags_text(flags: list[str] | None) -> str:
    """A run's flags as text: ``"none"``, the flags, or ``"not recorded"`` (None: the result
    file predates flags)."""
    if flags is None:
        return "not recorded (the result file predates them)"
    return ", ".join(flags) if flags else "none"


def flags_banner(flags: list[str] | None, null: bool = False) -> str:
    """The HTML paragraphs above the summary: the null-model note and the run's flags."""
    parts = []
    if null:
        parts.append("<p class='null'><b>Null model</b>: every checkpoint is the model after "
                     "experience 0, so nothing changed between checkpoints; these numbers are "
                     "what the crosscoder's fit alone reads.</p>")
    if flags:
        parts.append("<p class='flag'><b>Flagged run: " + html.escape(flags_text(flags))
                     + "</b>. The network collapsed or a layer died (clbench.metrics.flags); "
                     "its feature measures describe that, not forgetting.</p>")
    else:
        parts.append(f"<p>Run flags: {html.escape(flags_text(flags))}.</p>")
    return "\n".join(parts)


TOP_HEADERS = ["feature", "serves", "mean activation", f"retention min(ρ, {RETENTION_CAP:g})",
               "ρ = C^(T-1) / C^(t_i), uncapped", "persistence", "readout drop",
               "moved to middle"]

TOP_NOTE = (f"Retention is capped at {RETENTION_CAP:g} as in the summary's "
            "ff_mean_capacity_retention (a feature that grew after its experience counts as fully "
            "retained, not more); the uncapped ratio ρ of its capacity at the last checkpoint to "
            "its capacity just after its experience is shown beside it. Persistence: the "
            "fraction of later checkpoints at which it kept at least half its capacity. Readout "
            "drop: how much less the head reads it at the end than just after its experience.")


def top_feature_rows(fm: FeatureMeasures, top: list[int]) -> list[list[Any]]:
    """The "Top features" table's rows, in :data:`TOP_HEADERS`' order (retention capped)."""
    rho, pers, moved, drop = fm.retention, fm.persistence, fm.moved_to_middle, fm.readout_drop
    return [[i, f"exp{int(fm.serves[i])}", float(fm.activation[i]),
             min(float(rho[i]), RETENTION_CAP), float(rho[i]), float(pers[i]),
             None if drop is None else float(drop[i]), bool(moved[i])] for i in top]


def _figure(p: Path, alt: str) -> str:
    return f"<p><img src='{html.escape(p.name)}' alt='{html.escape(alt)}'></p>{_note(p.stem)}"


def write_report(out: Path, fm: FeatureMeasures, top: list[int], images: dict[int, list[list[int]]],
                 probe: Probe, summary: dict[str, Any], info: dict[str, Any],
                 flags: list[str] | None = None, null: bool = False,
                 class_names: list[str] | None = None, texts: list[str] | None = None) -> Path:
    """Write every figure and ``out/report.html``; returns the HTML's path. ``flags``: the
    run's flags (None: not recorded); ``null``: a null-model analysis; ``class_names``: the
    stream's (:attr:`clbench.streams.Stream.class_names`), for the probe inputs' titles;
    ``texts``: each probe row decoded (text runs), shown in place of the input images.
    ``info["run"]`` names the run in the title; give no absolute path in ``info``."""
    out.mkdir(parents=True, exist_ok=True)
    figs = [save_figure(capacity_by_experience_figure(fm), out / "capacity_by_experience.png")]
    if top:
        figs.append(save_figure(capacity_heatmaps_figure(fm, top), out / "capacity_heatmaps.png"))
        if fm.readout is not None:
            figs.append(save_figure(readout_curves_figure(fm, top), out / "readout_curves.png"))
    feature_figs = {} if texts is not None else {
        i: save_figure(feature_images_figure(probe, i, images[i], fm.after, class_names),
                       out / f"feature{i}_images.png") for i in top}
    if texts is not None:
        sections = [f"<h3>Feature {i}</h3>"
                    + feature_texts_table(probe, images[i], fm.after, texts, class_names)
                    + _note("feature_texts") for i in top]
    else:
        sections = [f"<h3>Feature {i}</h3>{_figure(p, f'feature {i}')}"
                    for i, p in feature_figs.items()]
    for old in set(out.glob("feature*_images.png")) - set(feature_figs.values()):
        old.unlink()        # an earlier analysis's top features: not linked, not this run's
    metric_rows = [[k, v, metric(k).direction, metric(k).formula] for k, v in summary.items()]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Feature-level forgetting</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px}img{max-width:100%}.flag{color:#b00;border:2px solid #b00;padding:4px}"
        ".null{border:2px solid #06c;padding:4px}.note{font-size:14px;color:#333}"
        ".texts td{vertical-align:top;max-width:220px;font-size:11px}"
        ".row{white-space:pre-wrap;font-family:monospace}</style>"
        "</head><body>",
        f"<h1>Feature-level forgetting{' (null model)' if null else ''}: "
        f"{html.escape(str(info.get('run', '')))}</h1>",
        flags_banner(flags, null),
        "<h2>Summary</h2>", _table(["metric", "value", "better", "what it is"], metric_rows),
        "<h2>Analysis</h2>", _table(["item", "value"], [[k, v] for k, v in info.items()]),
        "<h2>Figures</h2>", *[_figure(p, p.stem) for p in figs],
        "<h2>Top features</h2>", f"<p class='note'>{html.escape(TOP_NOTE)}</p>",
        _table(TOP_HEADERS, top_feature_rows(fm, top)),
        *sections,
        "</body></html>",
    ]
    return write_text_atomic(out / "report.html", "\n".join(parts) + "\n")
