"""The accuracy-matrix metrics against values computed by hand."""
from __future__ import annotations

import math

import pytest

from clbench.metrics import cl

# 3 experiences; R[i][j] = accuracy on j after training i
R = [[0.9, 0.2, 0.1],
     [0.7, 0.8, 0.3],
     [0.5, 0.6, 0.9]]
B = [0.1, 0.15, 0.05]


def test_final_accuracy() -> None:
    assert cl.final_accuracy(R) == pytest.approx((0.5 + 0.6 + 0.9) / 3)


def test_avg_incremental_accuracy() -> None:
    assert cl.avg_incremental_accuracy(R) == pytest.approx((0.9 + (0.7 + 0.8) / 2 + 2.0 / 3) / 3)


def test_forgetting_definitions_differ_when_accuracy_peaks_late() -> None:
    # experience 0 peaks at 0.9 right after training: both definitions agree on it;
    # make experience 1 peak later to separate max-minus-last from first-minus-last
    R2 = [[0.9, 0.2, 0.1], [0.7, 0.6, 0.3], [0.5, 0.8, 0.9]]
    R3 = [[0.9, 0.2, 0.1], [0.7, 0.6, 0.3], [0.65, 0.4, 0.9]]
    assert cl.forgetting_first(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.6)) / 2)
    assert cl.forgetting_max(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.6)) / 2)
    assert cl.forgetting_first(R2) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.8)) / 2)
    assert cl.forgetting_max(R2) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.8)) / 2)
    # max over i in [j, T-2] only: for j=0 the max is over rows 0,1
    assert cl.forgetting_max(R3) == pytest.approx(((0.9 - 0.65) + (0.6 - 0.4)) / 2)
    R4 = [[0.5, 0.2, 0.1], [0.9, 0.6, 0.3], [0.65, 0.4, 0.9]]  # exp 0 peaks after exp 1
    assert cl.forgetting_max(R4) == pytest.approx(((0.9 - 0.65) + (0.6 - 0.4)) / 2)
    assert cl.forgetting_first(R4) == pytest.approx(((0.5 - 0.65) + (0.6 - 0.4)) / 2)


def test_bwt_is_minus_first_forgetting() -> None:
    assert cl.bwt(R) == pytest.approx(-cl.forgetting_first(R))


def test_fwt() -> None:
    assert cl.fwt(R, B) == pytest.approx(((0.2 - 0.15) + (0.3 - 0.05)) / 2)


@pytest.mark.parametrize("name", sorted(cl.CL_METRICS))
def test_every_metric_is_nan_or_final_for_one_row(name: str) -> None:
    out = cl.cl_metrics([[0.5, 0.7]], [0.1, 0.1])
    if name == "final_accuracy":
        assert out[name] == pytest.approx(0.6)
    else:
        assert math.isnan(out[name])
