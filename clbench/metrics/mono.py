"""Monosemanticity of SAE codes with respect to class labels (SAE-ception's set, SAEBench).

    >>> import torch
    >>> from clbench.metrics.mono import MONO_METRICS, mono_metrics
    >>> z = torch.relu(torch.randn(500, 64))           # SAE codes of held-out samples [N, m]
    >>> y = torch.randint(0, 5, (500,))                # their class labels [N]
    >>> scores = mono_metrics(z, y, seed=0)            # flat {name: float}
    >>> {k: MONO_METRICS[k] for k in ("csi", "davies_bouldin")}   # name -> higher_is_better
    {'csi': True, 'davies_bouldin': False}
    >>> set(scores) == set(MONO_METRICS)
    True

Definitions (codes ``z`` are non-negative, as ReLU/TopK SAEs produce; ``C`` classes; a latent is
*alive* when it is non-zero on at least one sample of ``z``):

- ``ari``: adjusted Rand index between ``y`` and the argmax-latent labels ``argmax_j z_j``
  (samples whose code is all zeros get their own label, -1).
- ``silhouette_latent`` / ``silhouette_label``: silhouette score of ``z`` (Euclidean) with the
  argmax-latent labels / with ``y``, on a seeded subsample of ``silhouette_samples`` rows.
- ``davies_bouldin`` (lower is better) and ``calinski_harabasz``: of ``z`` clustered by ``y``.
- ``csi``: class selectivity index, mean over alive latents of
  ``(mu_max - mu_other) / (mu_max + mu_other)``, with ``mu_c`` the mean of latent ``j`` over
  class ``c``, ``mu_max = max_c mu_c`` and ``mu_other`` the mean of the other ``C - 1`` class
  means. 1: the latent fires for one class only; 0: equally for all.
- ``uncertainty_coef``: Theil's U, mean over alive latents of ``U_j = I(b_j; y) / H(y)`` where
  ``b_j = 1[z_j > 0]`` is whether the latent fires, and ``I``, ``H`` are the mutual information
  and entropy of the empirical joint distribution of ``(b_j, y)`` on the ``N`` samples. 1: firing
  determines the class; 0: firing is independent of the class.
- ``sparse_probe_k{k}`` for ``k`` in ``probe_ks``: a seeded half of the samples trains, the
  other half tests. For each class ``c`` (one-vs-rest), the ``k`` latents with the largest
  ``mean(z | y = c) - mean(z | y != c)`` on the training half feed a standardised (training-half statistics), class-balanced
  logistic regression (liblinear solver); its *balanced* accuracy on the test half (mean of the true positive and
  true negative rates, so chance is 0.5 whatever the class frequency, as on SAEBench's balanced
  probing sets) is averaged over the classes.

Degenerate inputs give NaN rather than an exception: fewer than two classes in ``y`` (every
supervised metric and ``ari``), fewer than two distinct argmax labels or one label per sample
(``silhouette_latent``), no alive latent (``csi``, ``uncertainty_coef``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.special import xlogy
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (adjusted_rand_score, balanced_accuracy_score, calinski_harabasz_score,
                             davies_bouldin_score, silhouette_score)
from torch import Tensor

from clbench.metrics.registry import PROBE_KS, directions
from clbench.sae.quality import sae_quality
from clbench.sae.topk import SAEBase

#: metric name -> higher_is_better, for every metric :func:`mono_metrics` returns by default
#: (a view of the registry's ``mono`` group, whose result names carry a ``mono_`` prefix)
MONO_METRICS: dict[str, bool] = directions("mono", "mono_")

NAN = float("nan")


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def argmax_labels(z: np.ndarray) -> np.ndarray:
    """Index of each sample's largest latent; -1 for an all-zero code."""
    labels = z.argmax(axis=1)
    labels[z.max(axis=1) <= 0] = -1
    return labels


def _n_labels_ok(labels: np.ndarray) -> bool:
    return 2 <= len(np.unique(labels)) <= len(labels) - 1


def silhouette(z: np.ndarray, labels: np.ndarray, n_samples: int, seed: int) -> float:
    """Silhouette score on a seeded subsample of ``n_samples`` rows; NaN if undefined."""
    rows = np.random.default_rng(seed).permutation(len(z))[:n_samples]
    z, labels = z[rows].astype(np.float64), labels[rows]  # float64: no chunked upcasting in sklearn
    return float(silhouette_score(z, labels)) if _n_labels_ok(labels) else NAN


def class_selectivity(z: np.ndarray, y: np.ndarray) -> float:
    """Mean CSI over alive latents (see module docstring)."""
    classes = np.unique(y)
    alive = (z > 0).any(axis=0)
    if len(classes) < 2 or not alive.any():
        return NAN
    mu = np.stack([z[y == c][:, alive].mean(axis=0) for c in classes])  # [C, alive]
    mu_max = mu.max(axis=0)
    mu_other = (mu.sum(axis=0) - mu_max) / (len(classes) - 1)
    return float(np.mean((mu_max - mu_other) / (mu_max + mu_other)))


def uncertainty_coefficient(z: np.ndarray, y: np.ndarray) -> float:
    """Mean over alive latents of ``I(1[z_j > 0]; y) / H(y)`` (see module docstring)."""
    classes, y_idx = np.unique(y, return_inverse=True)
    alive = (z > 0).any(axis=0)
    n = len(y)
    p_y = np.bincount(y_idx) / n
    h_y = -float(np.sum(xlogy(p_y, p_y)))
    if h_y <= 0 or not alive.any():
        return NAN
    fires = (z[:, alive] > 0).astype(np.float64)                  # [N, A]
    onehot = np.eye(len(classes))[y_idx]                           # [N, C]
    p_c1 = onehot.T @ fires / n                                    # P(y = c, b = 1) [C, A]
    p_c0 = p_y[:, None] - p_c1                                     # P(y = c, b = 0)
    p_1 = fires.mean(axis=0)                                       # P(b = 1) [A]
    mi = (xlogy(p_c1, p_c1 / np.maximum(p_y[:, None] * p_1, 1e-300))
          + xlogy(p_c0, p_c0 / np.maximum(p_y[:, None] * (1 - p_1), 1e-300))).sum(axis=0)
    return float(np.mean(np.clip(mi, 0.0, None) / h_y))


def _binary_mi(b: np.ndarray, y_idx: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``I(b_j; y)`` and ``H(b_j)`` (nats) for binary columns ``b [N, A]`` and class indices
    ``y_idx [N]``, from the empirical joint distribution."""
    n = len(y_idx)
    p_y = np.bincount(y_idx, minlength=n_classes) / n
    onehot = np.eye(n_classes)[y_idx]
    p_c1 = onehot.T @ b / n
    p_c0 = p_y[:, None] - p_c1
    p_1 = b.mean(axis=0)
    mi = (xlogy(p_c1, p_c1 / np.maximum(p_y[:, None] * p_1, 1e-300))
          + xlogy(p_c0, p_c0 / np.maximum(p_y[:, None] * (1 - p_1), 1e-300))).sum(axis=0)
    h_b = -(xlogy(p_1, p_1) + xlogy(1 - p_1, 1 - p_1))
    return np.clip(mi, 0.0, None), h_b


def neuron_selectivity(h: Tensor | np.ndarray, y: Tensor | np.ndarray,
                       quantile: float = 0.75) -> dict[str, float]:
    """Monosemanticity of a layer's *neurons* ``h [N, d]`` (non-negative, e.g. after a ReLU),
    as SAE-ception's official code measures the model itself (METHODS.md):

    - ``neuron_csi``: :func:`class_selectivity` of ``h`` over its alive units;
    - ``neuron_u_hy`` (SAE-ception 2.0): mean over units whose binarisation is not constant of
      ``I(b_j; y) / H(y)``, ``b_j = 1[h_j > q_j]`` with ``q_j`` the unit's ``quantile``
      (75th percentile) over the rows;
    - ``neuron_u_hb`` (SAE-ception v1): the same mutual information over ``H(b_j)``.

    Both are in [0, 1]; they differ in scale (``H(y) = ln 10`` for 10 balanced classes, ``H(b)
    <= ln 2``), so compare a U only with the same normalisation."""
    h_np, y_np = _np(h).astype(np.float64), _np(y).reshape(-1)
    if h_np.ndim != 2 or len(h_np) != len(y_np):
        raise ValueError(f"need h [N, d] and y [N], got {h_np.shape} and {y_np.shape}")
    if (h_np < 0).any():
        raise ValueError("neuron_selectivity needs non-negative activations (after a ReLU)")
    classes, y_idx = np.unique(y_np, return_inverse=True)
    p_y = np.bincount(y_idx) / len(y_idx)
    h_y = -float(np.sum(xlogy(p_y, p_y)))
    b = (h_np > np.quantile(h_np, quantile, axis=0)).astype(np.float64)
    varying = (b.min(axis=0) < b.max(axis=0))
    if h_y <= 0 or not varying.any():
        return {"neuron_csi": class_selectivity(h_np, y_np), "neuron_u_hy": NAN, "neuron_u_hb": NAN}
    mi, h_b = _binary_mi(b[:, varying], y_idx, len(classes))
    return {"neuron_csi": class_selectivity(h_np, y_np), "neuron_u_hy": float(np.mean(mi / h_y)),
            "neuron_u_hb": float(np.mean(mi / np.maximum(h_b, 1e-300)))}


def sparse_probing(z: np.ndarray, y: np.ndarray, ks: Sequence[int] = PROBE_KS,
                   seed: int = 0) -> dict[str, float]:
    """``sparse_probe_k{k}``: one-vs-rest balanced accuracy on top-k latents (module docstring)."""
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, te = perm[: len(y) // 2], perm[len(y) // 2:]
    z_tr, z_te, y_tr, y_te = z[tr], z[te], y[tr], y[te]
    scores: dict[int, list[float]] = {k: [] for k in ks}
    for c in np.unique(y):
        pos_tr, pos_te = y_tr == c, y_te == c
        if pos_tr.all() or not pos_tr.any() or pos_te.all() or not pos_te.any():
            continue
        diff = z_tr[pos_tr].mean(axis=0) - z_tr[~pos_tr].mean(axis=0)
        order = np.argsort(-diff, kind="stable")
        for k in ks:
            top = order[:k]
            mu, sd = z_tr[:, top].mean(axis=0), z_tr[:, top].std(axis=0) + 1e-8
            probe = LogisticRegression(class_weight="balanced", solver="liblinear")
            probe.fit((z_tr[:, top] - mu) / sd, pos_tr)
            pred = probe.predict((z_te[:, top] - mu) / sd)
            scores[k].append(balanced_accuracy_score(pos_te, pred))
    return {f"sparse_probe_k{k}": float(np.mean(v)) if v else NAN for k, v in scores.items()}


def mono_metrics(z: Tensor | np.ndarray, y: Tensor | np.ndarray, *, seed: int = 0,
                 silhouette_samples: int = 2000,
                 probe_ks: Sequence[int] = PROBE_KS) -> dict[str, float]:
    """All monosemanticity metrics of codes ``z [N, m]`` against labels ``y [N]``."""
    z_np, y_np = _np(z).astype(np.float32), _np(y).reshape(-1)
    if z_np.ndim != 2 or len(z_np) != len(y_np):
        raise ValueError(f"need z [N, m] and y [N], got {z_np.shape} and {y_np.shape}")
    arg = argmax_labels(z_np)
    supervised = len(np.unique(y_np)) >= 2
    ok_y = _n_labels_ok(y_np)
    return {
        "ari": float(adjusted_rand_score(y_np, arg)) if supervised else NAN,
        "silhouette_latent": silhouette(z_np, arg, silhouette_samples, seed),
        "silhouette_label": silhouette(z_np, y_np, silhouette_samples, seed),
        "davies_bouldin": float(davies_bouldin_score(z_np, y_np)) if ok_y else NAN,
        "calinski_harabasz": float(calinski_harabasz_score(z_np, y_np)) if ok_y else NAN,
        "csi": class_selectivity(z_np, y_np),
        "uncertainty_coef": uncertainty_coefficient(z_np, y_np),
        **sparse_probing(z_np, y_np, probe_ks, seed),
    }


@torch.no_grad()
def monosemanticity(sae: SAEBase, x: Tensor, y: Tensor | np.ndarray, seed: int = 0,
                    batch_size: int = 4096) -> dict[str, float]:
    """:func:`~clbench.sae.quality.sae_quality` and :func:`mono_metrics` of ``sae`` on
    held-out activations ``x [N, d_in]`` with labels ``y [N]``, in one flat dict."""
    was_training = sae.training
    sae.eval()
    z = torch.cat([sae.encode(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])
    sae.train(was_training)
    return {**sae_quality(sae, x, batch_size), **mono_metrics(z, y, seed=seed)}
