"""Continual-learning metrics as pure functions of the accuracy matrix.

    >>> from clbench.metrics.cl import bwt, cl_metrics, final_accuracy, forgetting_max
    >>> R = [[0.75, 0.25], [0.5, 1.0]]      # R[i][j]: accuracy on experience j after training i
    >>> final_accuracy(R), forgetting_max(R), bwt(R)
    (0.75, 0.25, -0.25)
    >>> cl_metrics(R, b=[0.5, 0.5])["fwt"]   # R[0, 1] - b_1
    -0.25

Notation: ``R`` is ``[n_steps, T]`` with ``n_steps = T`` for a stream trained experience by
experience (``n_steps = 1`` for joint training, where only ``final_accuracy`` is defined);
``b_j`` is the accuracy of the untrained model on experience ``j``. Accuracies are fractions in
``[0, 1]``. Functions return ``nan`` where a metric is undefined (``T = 1`` or one row).

* final accuracy      ``A_T = (1/T) sum_j R[T-1, j]``
* average incremental ``(1/T) sum_i (1/(i+1)) sum_{j<=i} R[i, j]``  (Rebuffi et al., iCaRL, 2017)
* forgetting (max)    ``(1/(T-1)) sum_{j<T-1} max_{j<=i<T-1} R[i, j] - R[T-1, j]``
  (Chaudhry et al., RWalk, 2018; the Mammoth / FACIL definition)
* forgetting (first)  ``(1/(T-1)) sum_{j<T-1} R[j, j] - R[T-1, j]`` (Avalanche's definition)
* BWT                 ``(1/(T-1)) sum_{j<T-1} R[T-1, j] - R[j, j]``  (Lopez-Paz & Ranzato, GEM, 2017)
* FWT                 ``(1/(T-1)) sum_{j>=1} R[j-1, j] - b_j``       (same paper)

Directions, table headers and scales are in :mod:`clbench.metrics.registry` (group ``cl``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from clbench.metrics.registry import directions

Matrix = Sequence[Sequence[float]]

#: metric name -> higher_is_better, for every metric this module defines (a registry view)
CL_METRICS: dict[str, bool] = directions("cl")


def _square(R: Matrix) -> np.ndarray | None:
    a = np.asarray(R, dtype=float)
    return a if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 else None


def final_accuracy(R: Matrix) -> float:
    return float(np.mean(np.asarray(R, dtype=float)[-1]))


def avg_incremental_accuracy(R: Matrix) -> float:
    a = _square(R)
    if a is None:
        return math.nan
    return float(np.mean([a[i, : i + 1].mean() for i in range(len(a))]))


def forgetting_max(R: Matrix) -> float:
    a = _square(R)
    if a is None:
        return math.nan
    T = len(a)
    return float(np.mean([a[j:T - 1, j].max() - a[T - 1, j] for j in range(T - 1)]))


def forgetting_first(R: Matrix) -> float:
    a = _square(R)
    if a is None:
        return math.nan
    T = len(a)
    return float(np.mean([a[j, j] - a[T - 1, j] for j in range(T - 1)]))


def task_forgetting(R: Matrix, j: int = 0) -> float:
    """Forgetting of experience ``j`` alone: ``max_{j<=i<T-1} R[i, j] - R[T-1, j]`` (one term of
    :func:`forgetting_max`; ``j = 0``, the first task, is the one every later task can hurt).

        >>> round(task_forgetting([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.6, 0.6, 0.9]]), 3)
        0.3
    """
    a = _square(R)
    if a is None or not 0 <= j < len(a) - 1:
        return math.nan
    return float(a[j:len(a) - 1, j].max() - a[len(a) - 1, j])


def bwt(R: Matrix) -> float:
    return -forgetting_first(R)


def fwt(R: Matrix, b: Sequence[float]) -> float:
    a = _square(R)
    if a is None:
        return math.nan
    return float(np.mean([a[j - 1, j] - b[j] for j in range(1, len(a))]))


def cl_metrics(R: Matrix, b: Sequence[float]) -> dict[str, float]:
    """Every metric of :data:`CL_METRICS` for one run."""
    return {
        "final_accuracy": final_accuracy(R),
        "avg_incremental_accuracy": avg_incremental_accuracy(R),
        "forgetting_max": forgetting_max(R),
        "forgetting_first": forgetting_first(R),
        "bwt": bwt(R),
        "fwt": fwt(R, b),
    }
