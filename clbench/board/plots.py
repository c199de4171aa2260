"""Leaderboard figures as PNG: the critical-difference diagram and Pareto views.

    >>> test = friedman_nemenyi(means)                       # clbench.board.stats
    >>> cd_diagram(test, "leaderboard/cd-diagram.png", metric="final_accuracy")
    >>> pareto_figure(panels, "state MB", "final acc %", "leaderboard/pareto-state.png")

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state) and
saved without a ``Software`` stamp, so the same numbers give the same bytes; every file is
written to a temp name in its folder and renamed into place. Names (strategies, labels,
streams, metrics) are drawn as plain text (``parse_math=False``): a label such as ``$x$`` is
shown as typed, never parsed as mathtext.

* :func:`cd_diagram` follows Demšar (2006, JMLR 7, Fig. 1), drawn by scikit-posthocs
  (:func:`scikit_posthocs.critical_difference_diagram`): an axis of mean ranks (1 = best) with
  each strategy's rank marked, the best half labelled on the left and the rest on the right, a
  bar of length CD (the Nemenyi critical difference) above the axis, and a bar joining each
  maximal group of strategies the Nemenyi test does not separate at ``alpha``.
* :func:`pareto_figure` draws one panel per stream: every strategy's mean value (y) against its
  mean cost (x, log scale; a symmetric log scale when some cost is 0), with the Pareto front
  (:func:`clbench.board.stats.pareto_front`: no other strategy is both cheaper and better) joined
  by a staircase and drawn in colour; a panel that carries its costs' spread over seeds
  (the time view: min to max) draws it as horizontal bars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import scikit_posthocs as sp
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from clbench.atomic import write_atomic
from clbench.board.stats import RankTest, pareto_front

DPI = 110
FRONT, OTHER = "#d1495b", "#8c8c8c"


def save_png(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (:mod:`clbench.atomic`), with no metadata stamp."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=DPI,
                                                    metadata={"Software": None}))


def cd_diagram(test: RankTest, path: str | Path, metric: str) -> Path:
    """Draw the critical-difference diagram of ``test`` to ``path``: the axis, markers, elbows,
    labels, CD bar and group bars are :func:`scikit_posthocs.critical_difference_diagram`'s
    (bars from ``test.p_values``, the same groups as ``test.cliques``); clbench adds only the
    frame (axis limits and ticks 1..k, so the labels fit), the title and the test's note. With no
    test (too few strategies or streams) it draws the mean ranks without bars."""
    ranks = test.mean_ranks.astype(float)
    ranks.index = [str(n) for n in ranks.index]
    k = len(ranks)
    fig = Figure()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    lo_x, hi_x = 1.0, float(max(k, 2))
    text_w = 0.42 * (hi_x - lo_x) + 1.0
    levels = 0
    if k:
        # no test: a p-value of 0 for every pair only keeps the library from drawing bars
        p = test.p_values if test.p_values is not None else pd.DataFrame(
            0.0, index=ranks.index, columns=ranks.index)
        drawn = sp.critical_difference_diagram(
            ranks, p.loc[ranks.index, ranks.index], cd=test.cd, alpha=test.alpha, ax=ax,
            label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
            label_props={"fontsize": 9, "parse_math": False}, marker_props={"s": 12},
            text_h_margin=0.3)
        # each bar's points come in the order of a Python set (which changes with the hash
        # seed and so would change the pixels): sort them. The library stacks the bars in
        # levels at y = -1, -2, ...; the labels follow
        for (bar,) in drawn["crossbars"]:
            bar.set_data(sorted(bar.get_xdata()), bar.get_ydata())
        levels = int(-min([min(b[0].get_ydata()) for b in drawn["crossbars"]], default=0))
    bottom = -levels - max((k + 1) // 2, 1)     # the lowest label row (one data unit a row)
    top, low = 2.3, bottom - 1.1
    fig.set_size_inches(8.0, 0.42 * (top - low))
    ax.set_xlim(lo_x - text_w, hi_x + text_w)
    ax.set_ylim(low, top)
    ax.spines["top"].set_bounds(lo_x, hi_x)
    ax.set_xticks(range(1, max(k, 2) + 1))
    ax.tick_params(axis="x", labelsize=8, pad=1)
    title = f"Mean rank on {metric} over {test.n_streams} streams (1 = best)"
    ax.text((lo_x + hi_x) / 2, 1.5, title, ha="center", va="bottom", fontsize=10,
            fontweight="bold", parse_math=False)
    if test.statistic is None:
        note = str(test.reason)
    else:
        note = (f"Friedman chi2 = {test.statistic:.1f}, p = {test.p_value:.2g}; Nemenyi "
                f"alpha = {test.alpha:g}: strategies joined by a bar are not shown to differ")
    ax.text((lo_x + hi_x) / 2, bottom - 0.6, note, ha="center", va="top", fontsize=8,
            style="italic", parse_math=False)
    return save_png(fig, path)


@dataclass(frozen=True)
class ParetoPanel:
    """One stream's points: strategy labels with their mean cost (x) and mean value (y), and
    optionally the spread of the cost over seeds (``cost_lo`` <= cost <= ``cost_hi``: drawn as
    horizontal error bars)."""

    title: str
    labels: list[str]
    cost: list[float]
    value: list[float]
    cost_lo: list[float] | None = None
    cost_hi: list[float] | None = None


def _front_staircase(cost: list[float], value: list[float], front: list[bool]
                     ) -> tuple[list[float], list[float]]:
    """The front's points joined as a staircase (cost rising, value rising)."""
    pts = sorted((c, v) for c, v, f in zip(cost, value, front) if f)
    xs: list[float] = []
    ys: list[float] = []
    for c, v in pts:
        if xs:
            xs.append(c)
            ys.append(ys[-1])
        xs.append(c)
        ys.append(v)
    return xs, ys


def _cost_axis(ax: Axes, costs: list[float]) -> None:
    """Log scale for the cost axis; when some cost is 0, a symmetric log scale whose linear part
    ends one decade below the smallest positive cost, with plain-number ticks at 0 and decades."""
    if not costs:
        return
    positive = [c for c in costs if c > 0]
    if min(costs) > 0:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    lo = math.floor(math.log10(min(positive))) - 1 if positive else 0
    hi = math.ceil(math.log10(max(positive))) if positive else 1
    ax.set_xscale("symlog", linthresh=10.0 ** lo)
    ticks = [0.0] + [10.0 ** e for e in range(lo + 1, hi + 1)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _place_labels(ax: Axes, labels: list[str], cost: list[float], value: list[float],
                  front: list[bool]) -> None:
    """Annotate each point, moving a label down (with a leader line) while it would overlap one
    already placed; positions are worked out in axes fractions."""
    to_axes = ax.transData + ax.transAxes.inverted()
    ax.get_xlim(), ax.get_ylim()  # settle autoscaling before transforming
    placed: list[tuple[float, float, float]] = []
    order = sorted(range(len(labels)), key=lambda i: (-value[i], cost[i]))
    for i in order:
        if math.isnan(cost[i]) or math.isnan(value[i]):
            continue
        px, py = to_axes.transform((cost[i], value[i]))
        width = 0.0125 * len(labels[i])
        x0, y = (px + 0.012, py + 0.012) if px + 0.012 + width < 0.99 else (px - 0.012 - width,
                                                                                py + 0.012)
        x1 = x0 + width
        # nearest free slot: y, y - d, y + d, y - 2d, ... kept inside the axes
        slots = [y + s * n * 0.038 for n in range(0, 30) for s in ((-1, 1) if n else (1,))]
        free = [t for t in slots if 0.0 <= t <= 0.95
                and not any(a < x1 and x0 < b and abs(t - yy) < 0.038 for a, b, yy in placed)]
        moved = bool(free) and abs(free[0] - y) > 1e-9
        y = free[0] if free else y
        placed.append((x0, x1, y))
        ax.annotate(labels[i], (cost[i], value[i]), xytext=(x0, y), textcoords="axes fraction",
                    fontsize=7, va="bottom", color="black" if front[i] else "#555555",
                    fontweight="bold" if front[i] else "normal", parse_math=False,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#999999"} if moved else None)


def pareto_figure(panels: list[ParetoPanel], cost_label: str, value_label: str,
                  path: str | Path, title: str = "") -> Path:
    """Facets of value vs cost, one per panel, with the Pareto front marked; saved to ``path``."""
    n = len(panels)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.0 * nrows + 0.5))
    for i, p in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        front = pareto_front(p.cost, p.value)
        _cost_axis(ax, [c for c in p.cost if not math.isnan(c)])
        xs, ys = _front_staircase(p.cost, p.value, front)
        ax.plot(xs, ys, color=FRONT, lw=1, alpha=0.6, zorder=1)
        for label, c, v, f in zip(p.labels, p.cost, p.value, front):
            if math.isnan(c) or math.isnan(v):
                continue
            ax.scatter([c], [v], s=28 if f else 16, color=FRONT if f else OTHER, zorder=2,
                       edgecolors="black" if f else "none", linewidths=0.5)
        if p.cost_lo is not None and p.cost_hi is not None:
            for c, v, lo, hi, f in zip(p.cost, p.value, p.cost_lo, p.cost_hi, front):
                if not any(math.isnan(x) for x in (c, v, lo, hi)):
                    ax.errorbar([c], [v], xerr=[[c - lo], [hi - c]], fmt="none", capsize=2,
                                ecolor=FRONT if f else OTHER, elinewidth=0.7, zorder=1.5)
        _place_labels(ax, p.labels, p.cost, p.value, front)
        ax.set_title(p.title, fontsize=10, parse_math=False)
        ax.set_xlabel(cost_label, fontsize=9, parse_math=False)
        ax.set_ylabel(value_label, fontsize=9, parse_math=False)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3, lw=0.5)
    fig.suptitle(title or f"{value_label} vs {cost_label} (red: Pareto front)", fontsize=11,
                 parse_math=False)
    fig.tight_layout()
    return save_png(fig, path)
