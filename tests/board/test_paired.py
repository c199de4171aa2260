"""Paired tests over seeds and Holm's correction (clbench.board.paired)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from clbench.board.paired import holm, paired_test


def test_paired_test_is_scipy_s_paired_t_test_on_the_common_seeds() -> None:
    rng = np.random.default_rng(0)
    a = {s: float(v) for s, v in enumerate(rng.normal(0.7, 0.02, 6))}
    b = {s: a[s] + float(rng.normal(0.01, 0.01)) for s in range(5)}   # seed 5 only in a
    b[9] = 0.99                                                        # seed 9 only in b
    t = paired_test(b, a)
    seeds = range(5)
    ref = stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds])
    assert t.n == 5 and t.p_value == pytest.approx(ref.pvalue)
    assert t.diff == pytest.approx(np.mean([b[s] - a[s] for s in seeds]))
    d = np.array([b[s] - a[s] for s in seeds])
    assert t.half_width == pytest.approx(stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5))


def test_pairing_finds_what_welch_misses() -> None:
    """Seeds move both methods together (shared class order): a small, consistent gain is
    significant paired and not unpaired."""
    base = {s: 0.5 + 0.1 * s for s in range(5)}
    better = {s: v + 0.01 + 0.001 * (s % 2) for s, v in base.items()}
    assert paired_test(better, base).p_value < 1e-4
    assert stats.ttest_ind(list(better.values()), list(base.values()), equal_var=False).pvalue > 0.5


def test_edge_cases() -> None:
    assert math.isnan(paired_test({0: 1.0}, {0: 0.5}).p_value)
    assert paired_test({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}).p_value == 1.0
    assert paired_test({0: 1.0, 1: None}, {0: 0.5, 1: 0.4}).n == 1


def test_holm_by_hand_and_its_properties() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, math.nan, 0.01]) == pytest.approx([0.2, math.nan, 0.02], nan_ok=True)
    rng = np.random.default_rng(1)
    p = list(rng.uniform(0, 0.2, 12))
    adj = holm(p)
    assert all(q >= r for q, r in zip(adj, p)) and max(adj) <= 1.0
    order = np.argsort(p)
    assert all(adj[order[i]] <= adj[order[i + 1]] for i in range(len(p) - 1))
