"""Neuron-level CSI and U, with SAE-ception's two U normalisations (v1: H(b), 2.0: H(y))."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clbench.metrics.mono import neuron_selectivity


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 balanced classes; unit 0 is high exactly on class 0, units 1-2 are noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 250)
    h = rng.random((1000, 3)) * 0.1
    h[y == 0, 0] += 1.0
    return h, y


def test_a_unit_that_marks_one_class_has_u_hb_one_and_u_hy_its_entropy_share() -> None:
    h, y = _planted()
    out = neuron_selectivity(h[:, :1], y)
    # b = 1[h > q75] is exactly 1[y = 0]: I(b; y) = H(b) = H(1/4), so U_hb = 1 and
    # U_hy = H(1/4) / H(y) = H(1/4) / ln 4
    h_b = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert out["neuron_u_hb"] == pytest.approx(1.0)
    assert out["neuron_u_hy"] == pytest.approx(h_b / math.log(4))
    assert out["neuron_csi"] > 0.85


def test_noise_units_score_near_zero_and_more_signal_scores_higher() -> None:
    h, y = _planted()
    noise = neuron_selectivity(h[:, 1:], y)
    assert noise["neuron_u_hb"] < 0.02 and noise["neuron_u_hy"] < 0.02 and noise["neuron_csi"] < 0.15
    mixed = neuron_selectivity(h, y)
    assert noise["neuron_u_hb"] < mixed["neuron_u_hb"] < 1.0


def test_bad_inputs_are_refused() -> None:
    h, y = _planted()
    with pytest.raises(ValueError, match="non-negative"):
        neuron_selectivity(h - 1.0, y)
    with pytest.raises(ValueError, match=r"need h \[N, d\]"):
        neuron_selectivity(h[:10], y)
    assert math.isnan(neuron_selectivity(h, np.zeros(1000))["neuron_u_hy"])   # one class: H(y) = 0
