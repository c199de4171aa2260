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
  drive the feature most at that checkpoint (images, or line plots for 1-d inputs).

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

from clbench.analyze.measures import FeatureMeasures
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


def plot_capacity_by_experience(fm: FeatureMeasures, path: Path) -> Path:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for e, row in enumerate(fm.capacity_by_experience()):
        if row[0] is not None:
            ax.plot(range(len(fm.after)), row, marker="o", label=f"serves exp{e}")
    ax.set_xticks(range(len(fm.after)), _ckpt_labels(fm.after))
    ax.set_xlabel("checkpoint (after experience)")
    ax.set_ylabel("mean capacity $C_i^t$")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title("Capacity of features, grouped by the experience they serve")
    return save_figure(fig, path)


def plot_capacity_heatmaps(fm: FeatureMeasures, top: list[int], path: Path) -> Path:
    cols = min(4, len(top))
    rows = -(-len(top) // cols)
    height = (0.5 * len(fm.layers) + 1.2) * rows
    fig = Figure(figsize=(2.6 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = float(fm.capacity[top].max())
    for ax, i in zip(axes.flat, top):
        im = ax.imshow(fm.capacity[i].numpy()[::-1], aspect="auto", cmap="viridis", vmin=0,
                       vmax=vmax)
        ax.set_xticks(range(len(fm.after)), _ckpt_labels(fm.after), fontsize=6)
        ax.set_yticks(range(len(fm.layers)), fm.layers[::-1], fontsize=6)
        ax.set_title(f"feature {i} (serves exp{int(fm.serves[i])})", fontsize=8)
    for ax in list(axes.flat)[len(top):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.8, label="capacity $c_i^{(l,t)}$")
    return save_figure(fig, path)


def plot_readout_curves(fm: FeatureMeasures, top: list[int], path: Path) -> Path:
    assert fm.readout is not None
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for i in top:
        ax.plot(range(len(fm.after)), fm.readout[i].numpy(), marker="o",
                label=f"{i} (exp{int(fm.serves[i])})")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(range(len(fm.after)), _ckpt_labels(fm.after))
    ax.set_xlabel("checkpoint (after experience)")
    ax.set_ylabel("readout $r_i^t$ (cosine)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Readout of top features by the head")
    return save_figure(fig, path)


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


def plot_feature_images(probe: Probe, feature: int, rows: list[list[int]], after: list[int],
                        path: Path) -> Path:
    """``rows[t]``: probe row indices driving ``feature`` most at checkpoint ``t``."""
    n = max(len(r) for r in rows)
    fig = Figure(figsize=(1.1 * n, 1.2 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for t, picks in enumerate(rows):
        for j in range(n):
            ax = axes[t, j]
            if j < len(picks):
                _show_input(ax, probe.x[picks[j]])
                ax.set_title(f"y={int(probe.y[picks[j]])}", fontsize=6)
            else:
                ax.axis("off")
        axes[t, 0].set_ylabel(f"exp{after[t]}", fontsize=7)
    fig.suptitle(f"feature {feature}: top probe inputs per checkpoint", fontsize=8)
    return save_figure(fig, path)


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


def write_report(out: Path, fm: FeatureMeasures, top: list[int], images: dict[int, list[list[int]]],
                 probe: Probe, summary: dict[str, Any], info: dict[str, Any],
                 flags: list[str] | None = None, null: bool = False) -> Path:
    """Write every figure and ``out/report.html``; returns the HTML's path. ``flags``: the
    run's flags (None: not recorded); ``null``: a null-model analysis."""
    out.mkdir(parents=True, exist_ok=True)
    figs = [plot_capacity_by_experience(fm, out / "capacity_by_experience.png")]
    if top:
        figs.append(plot_capacity_heatmaps(fm, top, out / "capacity_heatmaps.png"))
        if fm.readout is not None:
            figs.append(plot_readout_curves(fm, top, out / "readout_curves.png"))
    feature_figs = {i: plot_feature_images(probe, i, images[i], fm.after,
                                           out / f"feature{i}_images.png") for i in top}
    for old in set(out.glob("feature*_images.png")) - set(feature_figs.values()):
        old.unlink()        # an earlier analysis's top features: not linked, not this run's
    rho, pers, moved = fm.retention, fm.persistence, fm.moved_to_middle
    drop = fm.readout_drop
    feat_rows = [[i, f"exp{int(fm.serves[i])}", float(fm.activation[i]), float(rho[i]),
                  float(pers[i]), None if drop is None else float(drop[i]), bool(moved[i])]
                 for i in top]
    metric_rows = [[k, v, metric(k).direction] for k, v in summary.items()]
    info_rows = [[k, v] for k, v in info.items()]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Feature-level forgetting</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px}img{max-width:100%}.flag{color:#b00;border:2px solid #b00;padding:4px}"
        ".null{border:2px solid #06c;padding:4px}</style></head><body>",
        f"<h1>Feature-level forgetting{' (null model)' if null else ''}: "
        f"{html.escape(str(info.get('run', '')))}</h1>",
        flags_banner(flags, null),
        "<h2>Summary</h2>", _table(["metric", "value", "better"], metric_rows),
        "<h2>Analysis</h2>", _table(["item", "value"], info_rows),
        "<h2>Figures</h2>",
        *[f"<p><img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'></p>" for p in figs],
        "<h2>Top features</h2>",
        _table(["feature", "serves", "mean activation", "retention", "persistence",
                "readout drop", "moved to middle"], feat_rows),
        *[f"<h3>Feature {i}</h3><p><img src='{html.escape(p.name)}' alt='feature {i}'></p>"
          for i, p in feature_figs.items()],
        "</body></html>",
    ]
    return write_text_atomic(out / "report.html", "\n".join(parts) + "\n")
