"""Monosemanticity metrics against hand-computed values and against scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score,
                             silhouette_score)

from clbench.metrics.mono import (MONO_METRICS, argmax_labels, class_selectivity, mono_metrics,
                                  monosemanticity, sparse_probing, uncertainty_coefficient)
from clbench.sae.quality import QUALITY_METRICS
from clbench.sae.topk import TopKSAE


def test_csi_two_classes_two_latents() -> None:
    # class 0: latent means (3, 1); class 1: (1, 2); latent 2 never fires (not alive)
    z = np.array([[2, 1, 0], [4, 1, 0], [0, 1, 0], [2, 3, 0]], dtype=float)
    y = np.array([0, 0, 1, 1])
    # latent 0: (3 - 1) / (3 + 1) = 0.5; latent 1: (2 - 1) / (2 + 1) = 1/3
    assert class_selectivity(z, y) == pytest.approx((0.5 + 1 / 3) / 2)


def test_csi_mu_other_is_the_mean_of_the_other_classes() -> None:
    z = np.array([[4.0], [1.0], [2.0]])  # class means 4, 1, 2: mu_other = 1.5
    assert class_selectivity(z, np.array([0, 1, 2])) == pytest.approx(2.5 / 5.5)


def test_uncertainty_coefficient_hand_values() -> None:
    y = np.array([0, 0, 1, 1])
    informative = np.array([[0.0], [0.0], [1.0], [2.0]])  # fires iff y == 1
    independent = np.array([[1.0], [0.0], [1.0], [0.0]])
    assert uncertainty_coefficient(informative, y) == pytest.approx(1.0)
    assert uncertainty_coefficient(independent, y) == pytest.approx(0.0, abs=1e-12)
    assert uncertainty_coefficient(np.hstack([informative, independent]), y) == pytest.approx(0.5)
    # b = (1, 1, 1, 0): I = H(b) - H(b|y) = 0.8113 - 0.5 bits; H(y) = 1 bit
    partial = np.array([[1.0], [1.0], [1.0], [0.0]])
    h_b = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert uncertainty_coefficient(partial, y) == pytest.approx(h_b - 0.5)


def test_argmax_labels_mark_empty_codes() -> None:
    z = np.array([[0.0, 2.0], [0.0, 0.0], [3.0, 1.0]])
    assert argmax_labels(z).tolist() == [1, -1, 0]


def test_clustering_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    z = np.maximum(rng.normal(size=(300, 12)) + 2.0 * np.eye(12)[y * 4], 0).astype(np.float32)
    got = mono_metrics(torch.from_numpy(z), torch.from_numpy(y), silhouette_samples=1000)
    arg = argmax_labels(z)
    assert got["ari"] == pytest.approx(adjusted_rand_score(y, arg))
    assert got["silhouette_latent"] == pytest.approx(silhouette_score(z, arg), rel=1e-5)
    assert got["silhouette_label"] == pytest.approx(silhouette_score(z, y), rel=1e-5)
    assert got["davies_bouldin"] == pytest.approx(davies_bouldin_score(z, y), rel=1e-5)
    assert got["calinski_harabasz"] == pytest.approx(calinski_harabasz_score(z, y), rel=1e-5)
    assert set(got) == set(MONO_METRICS)


def test_silhouette_subsample_is_seeded() -> None:
    rng = np.random.default_rng(1)
    z, y = rng.random((500, 6)), rng.integers(0, 4, 500)
    a = mono_metrics(z, y, seed=3, silhouette_samples=100)
    b = mono_metrics(z, y, seed=3, silhouette_samples=100)
    assert a["silhouette_label"] == b["silhouette_label"]


def test_sparse_probing_separable_and_chance() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    z = np.zeros((400, 10))
    z[np.arange(400), y] = 1.0 + rng.random(400)  # latent c fires exactly for class c
    z[:, 4:] = rng.random((400, 6))
    assert sparse_probing(z, y) == {"sparse_probe_k1": 1.0, "sparse_probe_k2": 1.0,
                                    "sparse_probe_k5": 1.0}
    chance = sparse_probing(rng.random((400, 10)), y, ks=(1,))["sparse_probe_k1"]
    assert 0.35 < chance < 0.65


def test_one_class_gives_nan() -> None:
    z = np.abs(np.random.default_rng(0).normal(size=(50, 5)))
    got = mono_metrics(z, np.zeros(50, dtype=int))
    for name in ("ari", "silhouette_label", "davies_bouldin", "calinski_harabasz", "csi",
                 "uncertainty_coef", "sparse_probe_k1"):
        assert math.isnan(got[name]), name
    assert not math.isnan(got["silhouette_latent"])
    assert math.isnan(mono_metrics(np.ones((6, 2)), np.array([0, 1] * 3))["silhouette_latent"])


def test_monosemanticity_combines_quality_and_mono() -> None:
    sae = TopKSAE(8, 32, 3, seed=0)
    x, y = torch.randn(200, 8), torch.randint(0, 3, (200,))
    sae.train()
    got = monosemanticity(sae, x, y, seed=0)
    assert set(got) == set(MONO_METRICS) | set(QUALITY_METRICS)
    assert sae.training and sae.steps_since_fired.sum() == 0  # evaluated in eval mode
    assert got["l0"] == pytest.approx(3.0)
