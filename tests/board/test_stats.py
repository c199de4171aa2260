"""clbench.board.stats: interval ranks, Friedman + Nemenyi against their textbook formulas, Pareto fronts."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from clbench.board.stats import (ci_rank, cliques, friedman_nemenyi, nemenyi_cd, pareto_front,
                           significant_pairs)


@pytest.mark.parametrize("hib", [True, False])
def test_ci_rank_is_the_worst_rank_the_intervals_allow(hib: bool) -> None:
    sign = 1.0 if hib else -1.0
    mean = pd.Series({"a": 0.90, "b": 0.89, "c": 0.86, "d": 0.50, "e": math.nan}) * sign
    half = pd.Series({"a": 0.02, "b": 0.02, "c": 0.015, "d": 0.01, "e": 0.1})
    r = ci_rank(mean, half, higher_is_better=hib)
    # a [.88,.92] and b [.87,.91] overlap -> b may be ahead of a: a 2; b is overlapped by a and
    # c [.845,.875] -> 3; c lies below a's interval but overlaps b's -> 3; d is below everything
    # -> 4; e undefined -> nan
    assert r[["a", "b", "c", "d"]].tolist() == [2.0, 3.0, 3.0, 4.0]
    assert math.isnan(r["e"])


def test_ci_rank_without_intervals_is_the_pessimistic_competition_rank() -> None:
    mean = pd.Series({"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0})
    half = pd.Series(0.0, index=mean.index)
    assert ci_rank(mean, half, True).tolist() == mean.rank(ascending=False, method="max").tolist()


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850),
                                  (8, 3.031), (10, 3.164)])
def test_nemenyi_q_matches_demsar_table_5(k: int, q: float) -> None:
    """q_0.05 of Demšar (2006), Table 5(a); CD = q sqrt(k(k+1)/(6N))."""
    q_alpha, cd = nemenyi_cd(k, 7, 0.05)
    assert q_alpha == pytest.approx(q, abs=1e-3)  # the table has 3 decimals
    assert cd == pytest.approx(q_alpha * math.sqrt(k * (k + 1) / 42.0))


def test_friedman_statistic_equals_the_mean_rank_formula() -> None:
    """Without ties chi2_F = 12N/(k(k+1)) [sum R_j^2 - k(k+1)^2/4] and F_F = (N-1)chi2/(N(k-1)-chi2)."""
    rng = np.random.default_rng(0)
    k, n = 6, 9
    means = pd.DataFrame(rng.normal(size=(k, n)) + np.arange(k)[:, None] * 0.4,
                         index=[f"s{i}" for i in range(k)], columns=[f"t{j}" for j in range(n)])
    test = friedman_nemenyi(means, higher_is_better=True)
    ranks = means.rank(axis=0, ascending=False)
    R = ranks.mean(axis=1)
    chi2 = 12 * n / (k * (k + 1)) * (float((R ** 2).sum()) - k * (k + 1) ** 2 / 4)
    assert test.statistic == pytest.approx(chi2)
    assert test.iman_davenport == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    assert test.mean_ranks.to_dict() == pytest.approx(R.to_dict())
    assert list(test.mean_ranks.index) == list(R.sort_values().index)  # best first
    assert test.cd == pytest.approx(nemenyi_cd(k, n)[1])
    # s5 has the largest values: rank 1 on most streams when higher is better, last when not
    lower = friedman_nemenyi(means, higher_is_better=False)
    assert lower.mean_ranks["s5"] == pytest.approx(k + 1 - test.mean_ranks["s5"])


def test_friedman_drops_incomplete_strategies_and_refuses_too_little_data() -> None:
    means = pd.DataFrame({"x": [0.9, 0.8, 0.7, 0.1], "y": [0.8, 0.9, 0.6, math.nan]},
                         index=["a", "b", "c", "d"])
    test = friedman_nemenyi(means)
    assert test.dropped == ["d"] and test.k == 3 and test.statistic is not None
    small = friedman_nemenyi(means.loc[["a", "b"]])
    assert small.statistic is None and "at least 3 strategies" in str(small.reason)


def test_cliques_are_maximal_groups_not_separated() -> None:
    """Groups from a hand-made p-value matrix: a-b-c, c-d and d-e not separated, the rest are."""
    r = pd.Series({"a": 1.0, "b": 1.5, "c": 2.4, "d": 3.6, "e": 5.0})
    same = {("a", "b"), ("a", "c"), ("b", "c"), ("c", "d"), ("d", "e")}
    p = pd.DataFrame([[1.0 if x == y or (x, y) in same or (y, x) in same else 0.001
                       for y in r.index] for x in r.index], index=r.index, columns=r.index)
    assert cliques(p, r, 0.05) == [("a", "b", "c"), ("c", "d"), ("d", "e")]
    assert cliques(p, r, 0.0001) == [("a", "b", "c", "d", "e")]
    assert cliques(pd.DataFrame(0.0, index=r.index, columns=r.index), r, 0.05) == []


def test_nemenyi_separates_exactly_the_pairs_further_apart_than_cd() -> None:
    rng = np.random.default_rng(1)
    means = pd.DataFrame(rng.normal(size=(5, 12)) + np.arange(5)[:, None],
                         index=list("abcde"))
    test = friedman_nemenyi(means)
    pairs = significant_pairs(test)
    assert pairs, "the data are built so that some pairs differ"
    for a, b in pairs:
        assert test.mean_ranks[a] < test.mean_ranks[b]  # better first
    for x, y in itertools.combinations("abcde", 2):
        far = abs(test.mean_ranks[x] - test.mean_ranks[y]) > test.cd
        assert test.differ(x, y) == far
        assert far == ((x, y) in pairs or (y, x) in pairs)
        # two strategies that differ are never in one clique
        assert not (far and any(x in g and y in g for g in test.cliques))


def test_pareto_front_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    cost = rng.integers(0, 6, size=40).astype(float)
    value = rng.integers(0, 6, size=40).astype(float)
    cost[3] = math.nan
    front = pareto_front(cost, value)
    for i in range(40):
        dominated = any(cost[j] <= cost[i] and value[j] >= value[i]
                        and (cost[j] < cost[i] or value[j] > value[i]) for j in range(40)
                        if not math.isnan(cost[j]))
        assert front[i] == (not math.isnan(cost[i]) and not dominated)
    assert pareto_front([0.0, 1.0, 2.0], [0.5, 0.9, 0.7]) == [True, True, False]
