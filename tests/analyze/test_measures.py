"""Forgetting measures on a crosscoder with hand-set decoder weights, checked against values
worked out by hand (see the comments)."""
from __future__ import annotations

import pytest
import torch

from clbench.analyze.measures import (
    FEATURE_FORGETTING_METRICS,
    FeatureMeasures,
    feature_measures,
)
from clbench.analyze.probe import Probe
from clbench.analyze.sources import Sources
from clbench.sae.crosscoder import TopKCrosscoder

# two layers ("a", "b" = head input) x two checkpoints; source s = l * 2 + t, each 2-d
# f0: only in (b, t0), direction (0.6, 0.8)            -> C = (1, 0): forgotten
# f1: 0.5 * (1, 0) in all four sources                  -> C = (0.707, 0.707): kept
# f2: (b, t0) = (0, 0.8), (a, t1) = (0.6, 0)            -> C = (0.8, 0.6), moves from b to a
W_DEC = torch.tensor([
    [0.0, 0.0, 0.0, 0.0, 0.6, 0.8, 0.0, 0.0],
    [0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0],
    [0.0, 0.0, 0.6, 0.0, 0.0, 0.8, 0.0, 0.0],
])
# probe: rows of classes 0, 1 (experience 0) and 2, 3 (experience 1); codes by hand
CODES = torch.tensor([[2.0, 0.0, 1.0],
                      [1.0, 0.0, 1.0],
                      [0.0, 1.0, 0.0],
                      [0.0, 0.0, 0.0]])
# head rows (4 classes, 2-d) at t0 and t1; each set sums to zero, so centring leaves them
HEADS = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]],
                      [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]]])


def toy_measures(x: torch.Tensor | None = None) -> FeatureMeasures:
    """The hand-set case above; ``x`` (4 probe inputs) defaults to zeros."""
    cc = TopKCrosscoder([2, 2, 2, 2], n_latents=3, k=1, seed=0)
    with torch.no_grad():
        cc.W_dec.copy_(W_DEC)
    sources = Sources(["a", "b"], [0, 1], [torch.zeros(4, 2)] * 4, [1.0] * 4, head_layer="b")
    probe = toy_probe(torch.zeros(4, 1) if x is None else x)
    return feature_measures(cc, sources, CODES, probe, HEADS, crosscoder_fvu=0.25,
                            crosscoder_fvu_heldout=0.3)


def toy_probe(x: torch.Tensor) -> Probe:
    return Probe(x=x, y=torch.arange(4), experience=torch.tensor([0, 0, 1, 1]),
                 rows=torch.arange(4), n_experiences=2, n_classes=4,
                 classes_per_exp=[[0, 1], [2, 3]])


@pytest.fixture
def fm() -> FeatureMeasures:
    return toy_measures()


def test_capacity_and_retention_by_hand(fm) -> None:
    torch.testing.assert_close(fm.capacity, torch.tensor([[[0.0, 0.0], [1.0, 0.0]],
                                                          [[0.5, 0.5], [0.5, 0.5]],
                                                          [[0.0, 0.6], [0.8, 0.0]]]))
    torch.testing.assert_close(fm.capacity_ckpt, torch.tensor([[1.0, 0.0], [0.5**0.5, 0.5**0.5],
                                                               [0.8, 0.6]]))
    assert fm.serves.tolist() == [0, 1, 0] and fm.ref.tolist() == [0, 1, 0]
    torch.testing.assert_close(fm.retention, torch.tensor([0.0, 1.0, 0.75]))
    torch.testing.assert_close(fm.persistence, torch.tensor([0.0, 1.0, 1.0]))  # f1: none later
    assert fm.moved_to_middle.tolist() == [False, False, True]
    assert fm.forgettable.tolist() == [True, False, True]                      # f1 serves last


def test_readout_by_hand(fm) -> None:
    # f0 at t0: weights 2/3, 1/3 on classes 0, 1: 2/3 * cos((.6,.8),(1,0)) + 1/3 * cos(.., (0,1))
    # = 2/3 * 0.6 + 1/3 * 0.8; at t1 it is absent from layer b: 0
    # f1 (class 2 only): cos((1,0), (-1,0)) = -1 at t0, cos((1,0), (0,-1)) = 0 at t1
    # f2 (classes 0, 1 at 1/2 each) at t0: (0 + 1) / 2; absent from b at t1
    torch.testing.assert_close(fm.readout, torch.tensor([[2 / 3 * 0.6 + 1 / 3 * 0.8, 0.0],
                                                         [-1.0, 0.0], [0.5, 0.0]]))


def test_summary_by_hand(fm) -> None:
    s = fm.summary()
    assert set(s) == set(FEATURE_FORGETTING_METRICS)
    expected = {"ff_frac_first_exp_capacity_halved": 0.5, "ff_frac_capacity_halved": 0.5,
                "ff_mean_capacity_retention": 0.375, "ff_mean_persistence": 0.5,
                "ff_mean_readout_drop": ((2 / 3 * 0.6 + 1 / 3 * 0.8) + 0.5) / 2,
                "ff_frac_moved_to_middle": 0.5, "ff_crosscoder_fvu": 0.25,
                "ff_crosscoder_fvu_heldout": 0.3}
    assert s == pytest.approx(expected)
    assert fm.top_features(2) == [0, 2] and fm.top_features(5) == [0, 2, 1]
    assert fm.counts()["alive_by_experience"] == [2, 1]


def test_summary_is_none_without_forgettable_features(fm) -> None:
    fm.serves = torch.ones_like(fm.serves)   # everything serves the last experience
    s = fm.summary()
    assert s["ff_frac_capacity_halved"] is None and s["ff_mean_readout_drop"] is None
    assert s["ff_crosscoder_fvu"] == 0.25 and s["ff_crosscoder_fvu_heldout"] == 0.3


def test_summary_without_heldout_rows_has_no_heldout_fvu(fm) -> None:
    fm.crosscoder_fvu_heldout = float("nan")
    assert fm.summary()["ff_crosscoder_fvu_heldout"] is None
