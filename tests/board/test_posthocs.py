"""The Nemenyi pairs and groups come from scikit-posthocs; clbench's own statistics (mean ranks,
CD) agree with it on Demšar's (2006) worked example and on the committed leaderboard results."""
from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats

from clbench.board.leaderboard import in_suite, means_matrix
from clbench.board.rank import rank_results
from clbench.board.stats import RankTest, friedman_nemenyi, significant_pairs
from clbench.results import load_results
from tests.board.test_outputs import BOARD, ROOT

#: Demšar (2006), JMLR 7, Table 6: AUC of four C4.5 variants on 14 data sets (higher is better).
#: On "voting" the table prints 0.975 for both C4.5+cf and C4.5+m+cf, yet the paper's mean
#: ranks (2.893, 1.964) rank C4.5+cf second and C4.5+m+cf third there: the unrounded AUCs
#: differ, so C4.5+cf is given as 0.97501
DEMSAR_AUC = pd.DataFrame(
    [[0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
     [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
     [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
     [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
     [0.972, 0.981, 0.97501, 0.975], [0.957, 0.978, 0.946, 0.970]],
    columns=["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]).T  # strategies x data sets


def cd_pairs(test: RankTest) -> set[frozenset[str]]:
    """The pairs separated by clbench's own rule: mean ranks further apart than CD."""
    assert test.cd is not None
    return {frozenset((a, b)) for a, b in itertools.combinations(test.mean_ranks.index, 2)
            if abs(test.mean_ranks[a] - test.mean_ranks[b]) > test.cd}


def library_pairs(test: RankTest) -> set[frozenset[str]]:
    """The pairs scikit-posthocs separates (sign_array of its Nemenyi p-values)."""
    assert test.p_values is not None
    signs = sp.sign_array(test.p_values, test.alpha)
    names = list(test.p_values.index)
    return {frozenset((names[i], names[j])) for i, j in zip(*np.nonzero(signs == 1))}


def library_rank_gaps(test: RankTest) -> pd.DataFrame:
    """``|R_a - R_b|`` recovered from scikit-posthocs's p-values by inverting the studentized
    range: ``|dR| = Q^-1(1 - p; k, inf) / sqrt(2) * sqrt(k(k+1)/(6N))``."""
    assert test.p_values is not None
    k, n = test.k, test.n_streams
    q = stats.studentized_range.isf(test.p_values.to_numpy(), k, math.inf)
    gaps = q / math.sqrt(2.0) * math.sqrt(k * (k + 1) / (6.0 * n))
    return pd.DataFrame(gaps, index=test.p_values.index, columns=test.p_values.columns)


def cd_groups(test: RankTest) -> list[tuple[str, ...]]:
    """Maximal runs of consecutive strategies (by mean rank) spanning at most CD: the groups
    clbench computed itself before it used scikit-posthocs's letters."""
    names, vals = list(test.mean_ranks.index), test.mean_ranks.to_numpy()
    out: list[tuple[str, ...]] = []
    last = -1
    for i in range(len(vals)):
        j = i
        while j + 1 < len(vals) and vals[j + 1] - vals[i] <= test.cd:
            j += 1
        if j > i and j > last:
            out.append(tuple(names[i:j + 1]))
            last = j
    return out


def test_demsar_table_6_by_hand() -> None:
    """Demšar sec. 3.2.4: mean ranks 3.143, 2.000, 2.893, 1.964; chi2_F = 9.28 (no tie
    correction), F_F = 3.69; CD = 1.25 at alpha 0.05 (no pair differs) and 1.12 at 0.10, where
    C4.5 is worse than C4.5+m and C4.5+m+cf and C4.5+cf belongs to neither side."""
    test = friedman_nemenyi(DEMSAR_AUC, higher_is_better=True, alpha=0.05)
    assert test.mean_ranks.round(3).to_dict() == {"C4.5": 3.143, "C4.5+m": 2.000,
                                                  "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}
    k, n, r = 4, 14, test.mean_ranks
    chi2 = 12 * n / (k * (k + 1)) * (float((r ** 2).sum()) - k * (k + 1) ** 2 / 4)
    assert round(chi2, 2) == 9.28 and round((n - 1) * chi2 / (n * (k - 1) - chi2), 2) == 3.69
    assert round(test.cd, 2) == 1.25
    assert significant_pairs(test) == [] and library_pairs(test) == cd_pairs(test) == set()
    assert test.cliques == [("C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5")]
    ten = friedman_nemenyi(DEMSAR_AUC, higher_is_better=True, alpha=0.10)
    assert round(ten.cd, 2) == 1.12
    expected = {frozenset(("C4.5+m+cf", "C4.5")), frozenset(("C4.5+m", "C4.5"))}
    assert library_pairs(ten) == cd_pairs(ten) == expected
    assert significant_pairs(ten) == [("C4.5+m+cf", "C4.5"), ("C4.5+m", "C4.5")]
    assert ten.cliques == [("C4.5+m+cf", "C4.5+m", "C4.5+cf"), ("C4.5+cf", "C4.5")]
    assert ten.cliques == cd_groups(ten)


@pytest.mark.parametrize("suite", ["cpu-v1", "cpu-v2"])  # lm-v1 has one stream: no test
@pytest.mark.parametrize("metric", ["final_accuracy", "forgetting_max"])
@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_library_and_clbench_agree_on_the_committed_results(suite: str, metric: str,
                                                            alpha: float) -> None:
    tables = rank_results(in_suite(load_results(BOARD / "results"), suite), metric)
    test = friedman_nemenyi(means_matrix(tables), tables.higher_is_better, alpha)
    assert test.p_values is not None, test.reason
    # the same mean ranks: the library's p-values give back clbench's rank gaps
    gaps = library_rank_gaps(test)
    r = test.mean_ranks
    for a, b in itertools.combinations(r.index, 2):
        if 1e-9 < test.p_values.loc[a, b] < 1 - 1e-9:   # near 0 or 1, isf loses precision
            assert gaps.loc[a, b] == pytest.approx(abs(r[a] - r[b]), rel=1e-6, abs=1e-9)
    # the same significant pairs and the same groups
    assert library_pairs(test) == cd_pairs(test)
    assert {frozenset(p) for p in significant_pairs(test)} == cd_pairs(test)
    assert test.cliques == cd_groups(test)


def test_the_committed_boards_separate_some_pairs() -> None:
    """The agreement above is not vacuous: on cpu-v1 and cpu-v2 some pairs differ, some not."""
    for suite in ("cpu-v1", "cpu-v2"):
        tables = rank_results(in_suite(load_results(BOARD / "results"), suite))
        test = friedman_nemenyi(means_matrix(tables), tables.higher_is_better)
        pairs = library_pairs(test)
        assert 0 < len(pairs) < test.k * (test.k - 1) // 2 and test.cliques


def test_cd_diagram_bytes_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """scikit-posthocs keeps each bar's strategies in a set; the drawn file must not change with
    PYTHONHASHSEED (the committed PNGs are compared with fresh ones)."""
    code = ("import sys; from clbench.board.plots import cd_diagram; "
            "from tests.board.test_posthocs import DEMSAR_AUC; "
            "from clbench.board.stats import friedman_nemenyi; "
            "cd_diagram(friedman_nemenyi(DEMSAR_AUC, alpha=0.10), sys.argv[1], 'auc')")
    outs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"cd-{seed}.png"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, env=env, check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
