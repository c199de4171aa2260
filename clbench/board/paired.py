"""Paired comparisons over seeds with a Holm correction: how two methods are compared.

    >>> a = {0: 0.70, 1: 0.72, 2: 0.69, 3: 0.71, 4: 0.70}     # seed -> metric, method A
    >>> b = {0: 0.74, 1: 0.75, 2: 0.73, 3: 0.76, 4: 0.73}     # the same seeds, method B
    >>> t = paired_test(b, a)
    >>> t.n, round(t.diff, 3), round(t.p_value, 5)
    (5, 0.038, 0.00053)
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]

**Why paired.** clbench's seeds fix the class order, the permutations, the initialisation and
the shuffling, so runs of two methods with the same seed share everything but the method. The
per-seed differences ``d_s = b_s - a_s`` remove that shared variation; the test is Student's
paired t-test (``t = mean(d) / (sd(d) / sqrt(n))``, ``n - 1`` degrees of freedom, two-sided)
on the seeds both methods ran. The interval is ``mean(d) ± t_{0.975, n-1} sd(d) / sqrt(n)``.
Welch's unpaired test, used before, ignores that pairing and loses power.

**Why Holm.** One table tests many (metric, stream) pairs; at level 0.05 each, some come out
"significant" by chance. Holm's step-down procedure (Holm 1979) controls the family-wise error
rate: sort the ``m`` p-values ``p_(1) <= ... <= p_(m)``; the adjusted value is
``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``; reject where ``p~ < alpha``. It is valid
under any dependence between the tests and uniformly more powerful than Bonferroni.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedTest:
    """``b - a`` over the seeds both have: count, mean difference, 95% half-width, p-value."""

    n: int
    diff: float
    half_width: float
    p_value: float


def paired_test(b: Mapping[int, float | None], a: Mapping[int, float | None]) -> PairedTest:
    """Paired t-test of ``b - a`` over the seeds where both are defined (nan p below 2 seeds,
    p = 1 when every difference is 0, p = 0 when all are equal and non-zero)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None
                   and math.isfinite(float(a[s])) and math.isfinite(float(b[s])))
    d = np.array([float(b[s]) - float(a[s]) for s in seeds])  # type: ignore[arg-type]
    n = len(d)
    if n < 2:
        return PairedTest(n, float(d.mean()) if n else math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return PairedTest(n, float(d.mean()), 0.0, 1.0 if d.mean() == 0 else 0.0)
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    p = float(stats.ttest_rel(d, np.zeros(n)).pvalue)
    return PairedTest(n, float(d.mean()), half, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (nan stays nan and does not count in ``m``)."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
