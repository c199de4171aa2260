"""Every metric a result can carry, in one registry: its direction, table header, display scale
and formula.

    >>> from clbench.metrics.registry import METRICS, metric
    >>> m = metric("forgetting_max")
    >>> m.higher_is_better, m.header, m.scale, m.arrow
    (False, 'forgetting (max) %', 100.0, 'lower is better')
    >>> m.display(0.25)
    25.0
    >>> "Chaudhry" in m.formula
    True
    >>> "mono_csi" in METRICS, metric("mono_csi").group
    (True, 'mono')
    >>> str(metric("bwt").range), str(metric("general_ppl_ratio").range), 1.5 in metric("bwt").range
    ('[-1, 1]', '(0, inf)', False)
    >>> metric("forgeting_max")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: unknown metric 'forgeting_max'; did you mean 'forgetting_max' or 'forgetting_first'?

A result file stores ``name -> {"value", "higher_is_better"}``; the flag is kept for readers of
the files, but ranking and checking take the direction from here (:func:`check_direction`
refuses a file whose flag disagrees). Each metric also has the :class:`Range` its formula allows
(accuracies in ``[0, 1]``, differences of accuracies in ``[-1, 1]``, bytes and seconds ``>= 0``,
perplexities ``>= 1``); a loaded value outside it, or not finite, is refused
(:mod:`clbench.validation`). A metric shown in a table is printed as
``value * scale`` under ``header``. The groups, and the code that computes each:

* ``cl``: functions of the accuracy matrix ``R [T, T]`` and the untrained accuracies ``b``
  (:mod:`clbench.metrics.cl`);
* ``cost``: what a run costs (:mod:`clbench.run.cost`, the runner's timers);
* ``sae`` / ``mono``: the monosemanticity block of a run (:mod:`clbench.run.mono`), that is
  ``sae_`` + :func:`clbench.sae.quality.sae_quality` and ``mono_`` +
  :func:`clbench.metrics.mono.mono_metrics`;
* ``ff``: feature-level forgetting written by ``clbench analyze``
  (:mod:`clbench.analyze.measures`).

The per-module dictionaries (``CL_METRICS``, ``MONO_METRICS``, ``QUALITY_METRICS``,
``MONO_BLOCK_METRICS``, ``COST_METRICS``, ``FEATURE_FORGETTING_METRICS``) are views made by
:func:`directions`. An outside method that reports a metric of its own makes it rankable with
``register(Metric(...))``; metrics in a file that are not registered are left out of tables.

Notation in the formulas: ``R[i, j]`` accuracy on experience ``j`` after training ``i``,
``T`` experiences; ``z [N, m]`` SAE codes of held-out activations ``x``, ``y`` their labels,
``C`` classes; for ``ff``, ``C_i^t`` the capacity of crosscoder feature ``i`` at checkpoint
``t``, ``t_i`` its reference checkpoint and ``rho_i = C_i^(T-1) / C_i^(t_i)`` (definitions in
:mod:`clbench.analyze.measures`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from clbench.errors import ClbenchError
from clbench.registry import Registry, unknown_name_message

#: metric groups, in the order ``clbench ls metrics`` lists them
GROUPS = ("cl", "cost", "lm", "sae", "mono", "ff")
#: ``k`` of the ``sparse_probe_k{k}`` monosemanticity metrics
PROBE_KS = (1, 2, 5)


@dataclass(frozen=True)
class Range:
    """The values a metric's formula can take: ``low <= v <= high`` (``low < v`` when
    ``open_low``); either end may be infinite, but ``v`` itself must be finite."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False

    def __contains__(self, v: float) -> bool:
        return (math.isfinite(v) and (v > self.low if self.open_low else v >= self.low)
                and v <= self.high)

    def __str__(self) -> str:
        def num(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"
        left = "(" if self.open_low or self.low == -math.inf else "["
        right = ")" if self.high == math.inf else "]"
        return f"{left}{num(self.low)}, {num(self.high)}{right}"


#: the ranges metrics share: accuracies and fractions, differences of two accuracies, amounts
#: (bytes, seconds, counts), strictly positive ratios, perplexities, anything finite
UNIT, SIGNED, AMOUNT = Range(0.0, 1.0), Range(-1.0, 1.0), Range(0.0)
POSITIVE, PPL, FINITE = Range(0.0, open_low=True), Range(1.0), Range()


@dataclass(frozen=True)
class Metric:
    """One metric: ``name`` as in result files, whether higher values are better, the table
    ``header`` and ``scale`` (shown value = value x scale), a one-line ``formula`` citing its
    source, its ``group`` (one of :data:`GROUPS`) and the :class:`Range` of its values."""

    name: str
    higher_is_better: bool
    header: str
    scale: float
    formula: str
    group: str
    range: Range = field(default=FINITE)

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"`` (is better)."""
        return "higher" if self.higher_is_better else "lower"

    @property
    def arrow(self) -> str:
        """``"higher is better"`` or ``"lower is better"``, as tables say it."""
        return f"{self.direction} is better"

    def display(self, value: float) -> float:
        """``value x scale``: the number a table shows."""
        return value * self.scale

    def entry(self, value: Any) -> dict[str, Any]:
        """The metric's entry in a result file: ``{"value": value, "higher_is_better": ...}``."""
        return {"value": value, "higher_is_better": self.higher_is_better}


METRICS: Registry[Metric] = Registry("metric")


def register(m: Metric) -> Metric:
    """Add ``m`` to :data:`METRICS` (a duplicate name, an empty header or formula, a formula
    on several lines, a scale <= 0 or an unknown group is a ``ValueError``)."""
    if not m.header or not m.formula.strip() or "\n" in m.formula:
        raise ValueError(f"metric {m.name!r} needs a header and a one-line formula")
    if not m.scale > 0:
        raise ValueError(f"metric {m.name!r}: scale must be positive, got {m.scale}")
    if m.group not in GROUPS:
        raise ValueError(f"metric {m.name!r}: group {m.group!r} is not one of {', '.join(GROUPS)}")
    if not m.range.low <= m.range.high:
        raise ValueError(f"metric {m.name!r}: empty range {m.range}")
    METRICS.add(m.name, m, description=m.formula, group=m.group)
    return m


def metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name is a ClbenchError with the closest ones."""
    return METRICS.get(name).obj


def in_group(group: str) -> list[Metric]:
    """The metrics of ``group``, sorted by name."""
    if group not in GROUPS:
        raise ValueError(f"unknown metric group {group!r}; one of {', '.join(GROUPS)}")
    return [e.obj for e in METRICS if e.obj.group == group]


def directions(group: str, prefix: str = "") -> dict[str, bool]:
    """``name -> higher_is_better`` for ``group``, with ``prefix`` cut off each name (the view
    the computing module keeps: ``directions("sae", "sae_")`` names what ``sae_quality``
    returns)."""
    return {m.name.removeprefix(prefix): m.higher_is_better for m in in_group(group)}


def listed() -> list[Metric]:
    """Every metric, by group (in :data:`GROUPS` order) then by name."""
    return [m for g in GROUPS for m in in_group(g)]


def check_direction(name: str, higher_is_better: Any, where: str) -> Metric:
    """The registered metric ``name``, after checking that a file's flag for it agrees with
    the registry (ClbenchError naming ``where`` otherwise)."""
    if name not in METRICS:
        raise ClbenchError(f"{where}: {unknown_name_message('metric', name, METRICS.names())}")
    m = metric(name)
    if bool(higher_is_better) != m.higher_is_better:
        raise ClbenchError(f"{where}: metric {name!r} is marked higher_is_better="
                           f"{str(bool(higher_is_better)).lower()}, but it is {m.arrow}; "
                           "the file is stale or edited, re-run it")
    return m


def _add(group: str, rows: list[tuple[str, bool, str, float, str, Range]]) -> None:
    for name, hib, header, scale, formula, values in rows:
        register(Metric(name, hib, header, scale, formula, group, values))


_GEM = "Lopez-Paz & Ranzato, GEM, 2017"
_add("cl", [
    ("final_accuracy", True, "final acc %", 100.0,
     f"A_T = (1/T) sum_j R[T-1, j]  (ACC; {_GEM})", UNIT),
    ("avg_incremental_accuracy", True, "avg inc acc %", 100.0,
     "(1/T) sum_i (1/(i+1)) sum_{j<=i} R[i, j]  (Rebuffi et al., iCaRL, 2017)", UNIT),
    ("forgetting_max", False, "forgetting (max) %", 100.0,
     "(1/(T-1)) sum_{j<T-1} max_{j<=i<T-1} R[i, j] - R[T-1, j]  (Chaudhry et al., RWalk, 2018)", SIGNED),
    ("forgetting_first", False, "forgetting (first) %", 100.0,
     "(1/(T-1)) sum_{j<T-1} R[j, j] - R[T-1, j]  (Avalanche's forgetting, Lomonaco et al. 2021)", SIGNED),
    ("bwt", True, "BWT %", 100.0,
     f"(1/(T-1)) sum_{{j<T-1}} R[T-1, j] - R[j, j]  ({_GEM})", SIGNED),
    ("fwt", True, "FWT %", 100.0,
     f"(1/(T-1)) sum_{{j>=1}} R[j-1, j] - b_j, b_j the untrained model's accuracy  ({_GEM})", SIGNED),
])

_COST = "cf. Diaz-Rodriguez et al. 2018"  # "Don't forget, there is more than forgetting"
_add("cost", [
    ("state_bytes", False, "state MB", 1e-6,
     "max_i bytes of method state kept after experience i: samples, tensors, model copies  "
     f"({_COST})", AMOUNT),
    ("model_bytes", False, "model MB", 1e-6,
     f"sum over the final model's parameters and buffers of numel x element size  ({_COST})", AMOUNT),
    ("peak_rss_bytes", False, "peak RSS MB", 1e-6,
     f"max over the run of the process's resident set size  ({_COST})", AMOUNT),
    ("train_seconds", False, "train s", 1.0,
     f"sum_i wall-clock seconds of training on experience i  ({_COST})", AMOUNT),
    ("eval_seconds", False, "eval s", 1.0,
     f"sum_i wall-clock seconds of evaluating every test experience after experience i  ({_COST})", AMOUNT),
    ("mono_seconds", False, "mono s", 1.0,
     "sum_i wall-clock seconds of the monosemanticity block after experience i  (clbench)", AMOUNT),
])

_TRACE = "Wang et al., TRACE, 2023"
_add("lm", [
    ("general_ppl_before", False, "prose ppl (before)", 1.0,
     "exp(mean NLL per token) of the pretrained model on held-out general prose (KJV)  "
     f"({_TRACE}: general ability)", PPL),
    ("general_ppl_after", False, "prose ppl (after)", 1.0,
     f"the same perplexity after the last experience  ({_TRACE})", PPL),
    ("general_ppl_ratio", False, "prose ppl ratio", 1.0,
     f"general_ppl_after / general_ppl_before: > 1, general ability lost  ({_TRACE})", POSITIVE),
    ("tokens_per_second", True, "train tok/s", 1.0,
     "real training tokens processed per second of training, summed over epochs  (clbench)", AMOUNT),
])

_GAO = "Gao et al. 2024; SAEBench, Karvonen et al. 2025"
_add("sae", [
    ("sae_fvu", False, "SAE FVU", 1.0,
     f"sum (x_hat - x)^2 / sum (x - mean(x))^2 on held-out x  ({_GAO})", AMOUNT),
    ("sae_explained_variance", True, "SAE expl. var", 1.0, f"1 - FVU  ({_GAO})", Range(high=1.0)),
    ("sae_l0", False, "SAE L0", 1.0, f"(1/N) sum_n |{{j : z_nj > 0}}|  ({_GAO})", AMOUNT),
    ("sae_dead_fraction", False, "SAE dead %", 100.0,
     f"(1/m) |{{j : z_nj = 0 for every n}}|  ({_GAO})", UNIT),
    ("sae_dense_fraction", False, "SAE dense %", 100.0,
     f"(1/m) |{{j : (1/N) |{{n : z_nj > 0}}| > 0.1}}|  ({_GAO})", UNIT),
])

_add("mono", [
    ("mono_ari", True, "ARI", 1.0,
     "ARI(y, argmax_j z_j), all-zero codes labelled -1  (Hubert & Arabie 1985)", SIGNED),
    ("mono_silhouette_latent", True, "silhouette (latent)", 1.0,
     "mean_n (b_n - a_n) / max(a_n, b_n) of z labelled by argmax_j z_j  (Rousseeuw 1987)", SIGNED),
    ("mono_silhouette_label", True, "silhouette (label)", 1.0,
     "mean_n (b_n - a_n) / max(a_n, b_n) of z labelled by y  (Rousseeuw 1987)", SIGNED),
    ("mono_davies_bouldin", False, "Davies-Bouldin", 1.0,
     "(1/C) sum_c max_{c' != c} (s_c + s_c') / ||mu_c - mu_c'|| of z by y  "
     "(Davies & Bouldin 1979)", AMOUNT),
    ("mono_calinski_harabasz", True, "Calinski-Harabasz", 1.0,
     "(tr B / (C - 1)) / (tr W / (N - C)) of z by y  (Calinski & Harabasz 1974)", AMOUNT),
    ("mono_csi", True, "CSI", 1.0,
     "mean over alive latents of (mu_max - mu_other) / (mu_max + mu_other)  (Morcos et al. 2018)", UNIT),
    ("mono_uncertainty_coef", True, "Theil's U", 1.0,
     "mean over alive latents of I(1[z_j > 0]; y) / H(y)  (Theil 1970)", UNIT),
    *[(f"mono_sparse_probe_k{k}", True, f"probe k={k} bal acc %", 100.0,
       f"mean_c balanced accuracy of a logistic probe on the k={k} latents with the largest "
       "mean(z | y=c) - mean(z | y!=c)  (Gurnee et al. 2023; SAEBench)", UNIT) for k in PROBE_KS],
])

#: ff metrics have no short names of their own: tables head them with their result names, as
#: ``clbench analyze``'s report does, and show the fractions as they are
_MASIP = "Masip et al. 2026"  # "Putting a Face to Forgetting"
_add("ff", [(name, hib, name, 1.0, formula, values) for name, hib, formula, values in [
    ("ff_frac_first_exp_capacity_halved", False,
     f"mean over forgettable features serving experience 0 of 1[rho_i < 1/2]  ({_MASIP})", UNIT),
    ("ff_frac_capacity_halved", False,
     f"mean over forgettable features of 1[rho_i < 1/2]  ({_MASIP})", UNIT),
    ("ff_mean_capacity_retention", True,
     f"mean over forgettable features of min(rho_i, 1)  ({_MASIP})", UNIT),
    ("ff_mean_persistence", True,
     "mean over forgettable features of |{t > t_i : C_i^t >= C_i^(t_i) / 2}| / |{t > t_i}|  "
     f"({_MASIP})", UNIT),
    ("ff_mean_readout_drop", False,
     f"mean over forgettable features of r_i^(t_i) - r_i^(T-1), r the head readout  ({_MASIP})", FINITE),
    ("ff_frac_moved_to_middle", True,
     "fraction of forgettable features whose peak layer moves from the last to an earlier one  "
     f"({_MASIP})", UNIT),
    ("ff_crosscoder_fvu", False,
     f"sum (x_hat - x)^2 / sum (x - mean(x))^2 of the crosscoder on the probe rows it was "
     f"fitted on  ({_MASIP})", AMOUNT),
    ("ff_crosscoder_fvu_heldout", False,
     "sum (x_hat - x)^2 / sum (x - mean(x))^2 of the crosscoder on held-out probe rows  "
     f"({_MASIP})", AMOUNT),
]])
