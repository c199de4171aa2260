"""The statistics behind the leaderboard: interval ranks, Friedman + Nemenyi, Pareto fronts.

    >>> ci_rank(pd.Series({"a": 0.90, "b": 0.89, "c": 0.50}), pd.Series({"a": 0.02, "b": 0.02,
    ...         "c": 0.01}), higher_is_better=True).tolist()
    [2.0, 2.0, 3.0]
    >>> means = pd.DataFrame({"s1": [0.9, 0.8, 0.5], "s2": [0.8, 0.7, 0.6], "s3": [0.7, 0.9, 0.4],
    ...                       "s4": [0.95, 0.6, 0.5]}, index=["a", "b", "c"])  # strategies x streams
    >>> test = friedman_nemenyi(means)        # higher is better
    >>> round(test.statistic, 2), round(test.p_value, 3), test.mean_ranks.round(2).tolist()
    (6.5, 0.039, [1.25, 1.75, 3.0])

**Interval rank (per stream).** With ``m_i`` a strategy's mean over seeds and ``h_i`` the
half-width of its 95% t-interval, ``[lo_i, hi_i] = [m_i - h_i, m_i + h_i]``; a strategy with a
single seed has no interval (``h_i = inf``: its mean could lie anywhere). For a
higher-is-better metric::

    ci_rank_i = 1 + #{ j != i : hi_j >= lo_i }

(for lower-is-better: ``1 + #{ j != i : lo_j <= hi_i }``): the worst rank the intervals allow,
one plus the number of other strategies not shown to be worse (whose interval does not lie
wholly on the worse side). It is pessimistic on purpose: widening any interval (fewer seeds,
more spread) can only raise (worsen) a CI rank, never lower it, and ``ci_rank_i >= rank_i``
for the point rank (ties sharing the highest place, ``method="max"``); strategies with equal
means and equal intervals share it. Non-overlap of two 95% intervals is a conservative test of
a difference, so a CI rank is a bound that the data support, not an estimate.

**Friedman test (across streams).** Demšar (2006), "Statistical Comparisons of Classifiers
over Multiple Data Sets", JMLR 7:1-30, sec. 3.2.2. Streams are the ``N`` blocks, strategies the
``k`` treatments; ``r_ij`` is strategy ``j``'s rank on stream ``i`` (1 = best, ties averaged)
and ``R_j = (1/N) sum_i r_ij`` its mean rank. Under the null hypothesis that all strategies
are equivalent::

    chi2_F = 12 N / (k (k+1)) * [ sum_j R_j^2 - k (k+1)^2 / 4 ]      ~ chi2(k - 1)

computed by :func:`scipy.stats.friedmanchisquare` (which also corrects for ties). Demšar
recommends Iman and Davenport's less conservative form, reported beside it::

    F_F = (N - 1) chi2_F / (N (k - 1) - chi2_F)                       ~ F(k - 1, (k - 1)(N - 1))

**Nemenyi post-hoc test.** Two strategies differ at level ``alpha`` when their mean ranks
differ by more than the critical difference::

    CD = q_alpha * sqrt(k (k + 1) / (6 N)),    q_alpha = Q_{1-alpha}(k, inf) / sqrt(2)

where ``Q`` is the studentized range distribution (:data:`scipy.stats.studentized_range`;
``q_0.05`` = 1.960, 2.343, 3.164 for k = 2, 3, 10, Demšar's Table 5). Only strategies with a
value on every stream enter the test (complete blocks); the others are listed in
``RankTest.dropped``.

**What comes from a library.** The Nemenyi p-values, the significant pairs and the groups are
scikit-posthocs's: :func:`scikit_posthocs.posthoc_nemenyi_friedman` gives
``p_ab = P(Q(k, inf) > sqrt(2) |R_a - R_b| / sqrt(k(k+1)/(6N)))``, a pair differs where
:func:`scikit_posthocs.sign_array` marks ``p_ab < alpha`` (the same as ``|R_a - R_b| > CD``),
and the groups are the letters of :func:`scikit_posthocs.compact_letter_display` (maximal sets
of strategies no two of which differ). The Friedman statistic is :mod:`scipy`'s. clbench keeps
its own code for what neither library offers: the mean ranks themselves
(``posthoc_nemenyi_friedman`` computes them but returns only p-values), the critical difference
``CD`` (scikit-posthocs draws a given CD but does not compute it), the Iman-Davenport form, and
the CI rank and Pareto front above. tests/board/test_posthocs.py checks on the committed
results and on Demšar's Table 6 that both give the same mean ranks and the same pairs.

**Pareto front.** Point ``i`` (cost ``c_i``, lower is better; value ``v_i``, higher is better)
is on the front when no point ``j`` has ``c_j <= c_i`` and ``v_j >= v_i`` with one of the two
strict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats


def ci_rank(mean: pd.Series, half_width: pd.Series, higher_is_better: bool) -> pd.Series:
    """Interval rank of each entry (see the module docstring): nan where the mean is nan; a nan
    half-width (a single seed) is an unbounded interval."""
    sign = 1.0 if higher_is_better else -1.0
    m = mean.astype(float) * sign               # oriented: larger is better
    h = half_width.astype(float).reindex(m.index).fillna(math.inf)
    lo, hi = m - h, m + h
    defined = m.notna()
    out = pd.Series(np.nan, index=m.index, dtype=float)
    for i in m.index[defined]:
        others = defined & (m.index != i)
        out[i] = 1.0 + float((hi[others] >= lo[i]).sum())
    return out


def stream_ranks(means: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """``r_ij``: rank of strategy ``j`` (rows of ``means``) on stream ``i`` (its columns), 1 = best,
    ties sharing the average rank; returned as strategies x streams."""
    return means.rank(axis=0, ascending=not higher_is_better, method="average")


@dataclass
class RankTest:
    """Friedman's test over streams and the Nemenyi critical difference of the mean ranks."""

    #: strategy -> mean rank over the N streams, best first
    mean_ranks: pd.Series
    n_streams: int
    alpha: float
    #: None when the test cannot be run (``reason`` says why)
    statistic: float | None = None
    p_value: float | None = None
    iman_davenport: float | None = None
    iman_davenport_p: float | None = None
    q_alpha: float | None = None
    cd: float | None = None
    #: Nemenyi p-values (strategies x strategies, scikit-posthocs); None when not run
    p_values: pd.DataFrame | None = None
    #: maximal groups of strategies (best first) not shown to differ (scikit-posthocs's letters)
    cliques: list[tuple[str, ...]] = field(default_factory=list)
    #: strategies left out because they lack a value on some stream
    dropped: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def k(self) -> int:
        return len(self.mean_ranks)

    def differ(self, a: str, b: str) -> bool:
        """Whether the Nemenyi test separates strategies ``a`` and ``b`` at ``alpha``
        (:func:`scikit_posthocs.sign_array` of the p-values: 1 where ``p < alpha``)."""
        if self.p_values is None:
            return False
        signs = pd.DataFrame(sp.sign_array(self.p_values, self.alpha),
                             index=self.p_values.index, columns=self.p_values.columns)
        return bool(signs.loc[a, b] == 1)


def significant_pairs(test: RankTest) -> list[tuple[str, str]]:
    """Pairs (better first) the Nemenyi test separates (``p < alpha``, equivalently mean ranks
    further apart than CD), in mean-rank order."""
    names = [str(n) for n in test.mean_ranks.index]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if test.differ(a, b)]


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """``(q_alpha, CD)`` for ``k`` strategies compared over ``n`` streams (Demšar 2006, eq. 5)."""
    q = float(stats.studentized_range.ppf(1.0 - alpha, k, math.inf)) / math.sqrt(2.0)
    return q, q * math.sqrt(k * (k + 1) / (6.0 * n))


def nemenyi_p_values(complete: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Nemenyi p-values of every pair of strategies (rows of ``complete``, streams as columns, no
    nan) from :func:`scikit_posthocs.posthoc_nemenyi_friedman` (blocks as rows; it ranks each
    block ascending, so a higher-is-better metric is negated first; the p-values depend only
    on ``|R_a - R_b|`` and would be the same either way)."""
    sign = -1.0 if higher_is_better else 1.0
    blocks = (complete.astype(float) * sign).T
    p = sp.posthoc_nemenyi_friedman(blocks.to_numpy())
    names = [str(s) for s in complete.index]
    return pd.DataFrame(p.to_numpy(), index=names, columns=names)


def cliques(p_values: pd.DataFrame, mean_ranks: pd.Series, alpha: float) -> list[tuple[str, ...]]:
    """Maximal groups of two or more strategies no two of which the Nemenyi test separates, from
    the letters of :func:`scikit_posthocs.compact_letter_display` (one letter per group),
    members in mean-rank order, groups by their best member. These are the bars of a
    critical-difference diagram."""
    order = [str(n) for n in mean_ranks.sort_values(kind="stable").index]
    p = p_values.loc[order, order]
    letters = sp.compact_letter_display(p, alpha=alpha)
    groups = [frozenset(n for n in order if letters[n][j] != " ")
              for j in range(max(len(v) for v in letters))]
    maximal = {g for g in groups if len(g) > 1 and not any(g < h for h in groups)}
    out = [tuple(n for n in order if n in g) for g in maximal]
    return sorted(out, key=lambda g: [order.index(n) for n in g])


def friedman_nemenyi(means: pd.DataFrame, higher_is_better: bool = True,
                     alpha: float = 0.05) -> RankTest:
    """Friedman's test and the Nemenyi CD on ``means`` (strategies x streams, nan = not run)."""
    complete = means.dropna(axis=0, how="any")
    dropped = sorted(str(s) for s in means.index.difference(complete.index))
    ranks = stream_ranks(complete, higher_is_better)
    mean_ranks = ranks.mean(axis=1).sort_values(kind="stable")
    k, n = complete.shape
    test = RankTest(mean_ranks=mean_ranks, n_streams=n, alpha=alpha, dropped=dropped)
    if k < 3 or n < 2:
        test.reason = (f"the Friedman test needs at least 3 strategies run on at least 2 streams "
                       f"(have {k} strategies on all of {n} streams)")
        return test
    chi2, p = stats.friedmanchisquare(*[complete.loc[s].to_numpy() for s in complete.index])
    test.statistic, test.p_value = float(chi2), float(p)
    denom = n * (k - 1) - chi2
    d1, d2 = k - 1, (k - 1) * (n - 1)
    test.iman_davenport = math.inf if denom <= 0 else float((n - 1) * chi2 / denom)
    test.iman_davenport_p = 0.0 if denom <= 0 else float(stats.f.sf(test.iman_davenport, d1, d2))
    test.q_alpha, test.cd = nemenyi_cd(k, n, alpha)
    test.p_values = nemenyi_p_values(complete, higher_is_better).loc[
        [str(s) for s in mean_ranks.index], [str(s) for s in mean_ranks.index]]
    test.cliques = cliques(test.p_values, mean_ranks, alpha)
    return test


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> list[bool]:
    """For each point, whether it is on the Pareto front of (low ``cost``, high ``value``);
    a point with a nan coordinate is never on it."""
    c, v = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    ok = ~(np.isnan(c) | np.isnan(v))
    front = []
    for i in range(len(c)):
        if not ok[i]:
            front.append(False)
            continue
        dominated = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front.append(not bool(dominated.any()))
    return front


def summary_line(test: RankTest) -> str:
    """One sentence stating the Friedman and Nemenyi result (Markdown-free plain text)."""
    if test.statistic is None:
        return f"Friedman test not run: {test.reason}."
    verdict = "differ" if test.p_value is not None and test.p_value < test.alpha else "do not differ"
    ff = ("inf" if test.iman_davenport is not None and math.isinf(test.iman_davenport)
          else f"{test.iman_davenport:.2f}")
    return (f"Friedman test over N = {test.n_streams} streams and k = {test.k} strategies: "
            f"chi2_F = {test.statistic:.2f}, p = {test.p_value:.2g} (Iman-Davenport F_F = {ff}, "
            f"p = {test.iman_davenport_p:.2g}); the strategies {verdict} at alpha = {test.alpha:g}. "
            f"Nemenyi critical difference CD = {test.q_alpha:.3f} x sqrt(k(k+1)/(6N)) = "
            f"{test.cd:.2f} mean-rank units.")
