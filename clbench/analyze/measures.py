"""Stage 4 of ``clbench analyze``: per-feature forgetting measures and their summary.

    >>> from clbench.analyze.measures import feature_measures
    >>> fm = feature_measures(cc, sources, codes, probe, heads)     # heads: [T, C, d_head]
    >>> fm.capacity.shape, fm.readout.shape                          # [m, L, T], [m, T]
    >>> fm.summary()["ff_frac_first_exp_capacity_halved"]

Notation (Masip et al. 2026, "Putting a Face to Forgetting"): ``m`` features, ``L`` layers,
``T`` checkpoints (``after[t]``: the experience trained last), ``f`` the shared code on the
probe, ``d_i^(l,t)`` row ``i`` of source ``(l, t)``'s decoder block.

* **capacity** ``c_i^(l,t) = ||d_i^(l,t)||`` (``[m, L, T]``): where feature ``i`` lives. The
  crosscoder keeps ``sum_(l,t) (c_i^(l,t))^2 = 1``. Per checkpoint,
  ``C_i^t = sqrt(sum_l (c_i^(l,t))^2)``.
* **serves** ``e_i = argmax_e mean_{n: exp(n) = e} f_i(x_n)``: the experience whose probe rows
  activate the feature most (for a class split, the experience of its classes). Its
  *reference checkpoint* ``t_i`` is the first with ``after[t] >= e_i``: just after it learned.
* **readout** ``r_i^t = sum_c w_ic cos(d_i^(H,t), h~_c^t)`` with ``H`` the head-input layer,
  ``h~_c^t = h_c^t - mean_c' h_c'^t`` the head row of class ``c`` at checkpoint ``t`` minus the
  mean row (softmax ignores a shift shared by all rows), over the ``r`` classes the feature is
  most active for (``r`` = the number of classes of experience ``e_i``), weighted by their mean
  activations ``w_ic``. Where the feature is absent from layer ``H`` at ``t`` (its decoder
  norm there is below :data:`PRESENT` times its largest over checkpoints), there is no
  direction to read: readout 0. (A decoder block that has shrunk to noise would otherwise give
  a random cosine.)
* **retention** ``rho_i = C_i^(T-1) / C_i^(t_i)``; *capacity halved*: ``rho_i < 1/2``.
* **persistence** ``p_i``: fraction of checkpoints ``t > t_i`` with ``C_i^t >= C_i^(t_i) / 2``.
* **readout drop** ``r_i^(t_i) - r_i^(T-1)``.
* **moved to a middle layer**: at ``t_i`` the feature's largest capacity is in the last analyzed
  layer; at some later checkpoint its largest is in an earlier layer, whose capacity grew over
  its value at ``t_i`` (a late-layer feature of an early task re-appearing in a middle layer).

Summary metrics average over the *forgettable* features: alive (fires on some probe row),
serving an experience before the last, with capacity at ``t_i``; ``first_exp`` restricts to
those serving experience 0. They are ``None`` when no feature qualifies. Beside them the
summary carries the crosscoder's FVU on the probe rows it was fitted on
(``ff_crosscoder_fvu``) and on the held-out probe rows (``ff_crosscoder_fvu_heldout``; None
when none were held out), see :mod:`clbench.analyze.fit`. Codes ``f`` (so *serves*, *alive*
and the readout classes) are taken on every probe row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from clbench.analyze.probe import Probe
from clbench.analyze.sources import Sources
from clbench.metrics.registry import directions
from clbench.sae.crosscoder import TopKCrosscoder

#: capacity retention below this counts as "halved"
HALVED = 0.5
#: ``ff_mean_capacity_retention`` averages ``min(rho_i, RETENTION_CAP)``: growth is not credit
RETENTION_CAP = 1.0
#: a decoder block with a norm below this holds no direction
EPS = 1e-6
#: readout: a feature is present in a source if its decoder norm there is at least this
#: fraction of its largest norm in the same layer over the checkpoints
PRESENT = 0.2

#: summary metric -> higher_is_better (joined into the run's ``metrics``); a view of the
#: registry's ``ff`` group (:mod:`clbench.metrics.registry`)
FEATURE_FORGETTING_METRICS: dict[str, bool] = directions("ff")


def capacity(cc: TopKCrosscoder, n_layers: int, n_ckpts: int) -> Tensor:
    """``c_i^(l,t)``: ``[m, L, T]`` from the decoder norms (source ``s = l * T + t``)."""
    return cc.decoder_norms().reshape(cc.n_latents, n_layers, n_ckpts)


def group_means(f: Tensor, group: Tensor, n_groups: int) -> Tensor:
    """Mean of each feature over the rows of each group: ``f [N, m]``, ``group [N]`` ->
    ``[m, n_groups]`` (0 for an empty group)."""
    sums = torch.zeros(n_groups, f.shape[1]).index_add_(0, group, f)
    counts = torch.bincount(group, minlength=n_groups).clamp_min(1)
    return (sums / counts[:, None]).T


def reference_ckpt(serves: Tensor, after: list[int]) -> Tensor:
    """Index of the first checkpoint trained up to (or past) each feature's experience."""
    a = torch.tensor(after)
    return torch.searchsorted(a, serves.contiguous()).clamp_max(len(after) - 1)


def readout(dirs: Tensor, heads: Tensor, classes: Tensor, weights: Tensor) -> Tensor:
    """``r_i^t``: ``dirs [m, T, d]`` (decoder rows in the head-input layer), ``heads [T, C, d]``,
    ``classes``/``weights`` ``[m, r]`` (weights summing to 1 per row) -> ``[m, T]``."""
    centred = heads - heads.mean(dim=1, keepdim=True)
    h = centred / centred.norm(dim=2, keepdim=True).clamp_min(EPS)
    norms = dirs.norm(dim=2, keepdim=True)
    present = (norms > EPS) & (norms >= PRESENT * norms.amax(dim=1, keepdim=True))
    d = torch.where(present, dirs / norms.clamp_min(EPS), torch.zeros_like(dirs))
    cos = torch.einsum("mtd,tcd->mtc", d, h)                              # [m, T, C]
    picked = cos.gather(2, classes[:, None, :].expand(-1, cos.shape[1], -1))  # [m, T, r]
    return (picked * weights[:, None, :]).sum(dim=2)


def readout_classes(class_mean: Tensor, serves: Tensor,
                    classes_per_exp: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Each feature's top ``r_i = |classes of e_i|`` classes by mean activation and their
    normalised weights, padded to ``r = max r_i`` with weight 0: two ``[m, r]`` tensors."""
    sizes = torch.tensor([len(c) for c in classes_per_exp])[serves]
    r = int(sizes.max())
    vals, idx = class_mean.topk(r, dim=1)
    keep = torch.arange(r)[None, :] < sizes[:, None]
    w = vals.clamp_min(0) * keep
    total = w.sum(dim=1, keepdim=True)
    uniform = keep.float() / keep.sum(dim=1, keepdim=True)
    return idx, torch.where(total > 0, w / total.clamp_min(EPS), uniform)


@dataclass
class FeatureMeasures:
    """Every per-feature measure of the module docstring for one run."""

    after: list[int]
    layers: list[str]
    capacity: Tensor
    activation: Tensor
    firing: Tensor
    class_mean: Tensor
    exp_mean: Tensor
    serves: Tensor
    ref: Tensor
    readout: Tensor | None
    n_experiences: int
    crosscoder_fvu: float = float("nan")
    crosscoder_fvu_heldout: float = float("nan")

    @property
    def capacity_ckpt(self) -> Tensor:
        """``C_i^t``: ``[m, T]``."""
        return self.capacity.norm(dim=1)

    def _at_ref(self, x: Tensor) -> Tensor:
        return x.gather(1, self.ref[:, None]).squeeze(1)

    @property
    def retention(self) -> Tensor:
        """``rho_i``: ``[m]`` (0 where there is no capacity at ``t_i``)."""
        ref = self._at_ref(self.capacity_ckpt)
        return torch.where(ref > EPS, self.capacity_ckpt[:, -1] / ref.clamp_min(EPS),
                           torch.zeros_like(ref))

    @property
    def persistence(self) -> Tensor:
        """``p_i``: ``[m]`` (1 where no checkpoint follows ``t_i``)."""
        cap = self.capacity_ckpt
        later = torch.arange(cap.shape[1])[None, :] > self.ref[:, None]
        kept = (cap >= HALVED * self._at_ref(cap)[:, None]) & later
        return torch.where(later.any(dim=1), kept.sum(dim=1) / later.sum(dim=1).clamp_min(1),
                           torch.ones(cap.shape[0]))

    @property
    def readout_drop(self) -> Tensor | None:
        return None if self.readout is None else self._at_ref(self.readout) - self.readout[:, -1]

    @property
    def moved_to_middle(self) -> Tensor:
        """bool ``[m]``: see the module docstring."""
        cap = self.capacity
        if cap.shape[1] < 2:
            return torch.zeros(cap.shape[0], dtype=torch.bool)
        peak = cap.argmax(dim=1)                                   # [m, T]
        early = cap[:, :-1].amax(dim=1)                            # [m, T] best earlier layer
        last = cap.shape[1] - 1
        later = torch.arange(cap.shape[2])[None, :] > self.ref[:, None]
        grown = early > self._at_ref(early)[:, None]
        return (self._at_ref(peak) == last) & ((peak < last) & grown & later).any(dim=1)

    @property
    def alive(self) -> Tensor:
        return self.firing > 0

    @property
    def forgettable(self) -> Tensor:
        """Alive, serving an experience before the last, with capacity at ``t_i``."""
        return (self.alive & (self.serves < self.n_experiences - 1)
                & (self.ref < len(self.after) - 1) & (self._at_ref(self.capacity_ckpt) > EPS))

    def summary(self) -> dict[str, float | None]:
        """The :data:`FEATURE_FORGETTING_METRICS` values."""
        sel, first = self.forgettable, self.forgettable & (self.serves == 0)

        def mean(x: Tensor | None, mask: Tensor) -> float | None:
            return None if x is None or not bool(mask.any()) else float(x[mask].float().mean())

        rho = self.retention
        fvu, fvu_h = self.crosscoder_fvu, self.crosscoder_fvu_heldout
        return {
            "ff_frac_first_exp_capacity_halved": mean(rho < HALVED, first),
            "ff_frac_capacity_halved": mean(rho < HALVED, sel),
            "ff_mean_capacity_retention": mean(rho.clamp(max=RETENTION_CAP), sel),
            "ff_mean_persistence": mean(self.persistence, sel),
            "ff_mean_readout_drop": mean(self.readout_drop, sel),
            "ff_frac_moved_to_middle": mean(self.moved_to_middle, sel),
            "ff_crosscoder_fvu": None if fvu != fvu else float(fvu),
            "ff_crosscoder_fvu_heldout": None if fvu_h != fvu_h else float(fvu_h),
        }

    def counts(self) -> dict[str, Any]:
        """How many features each summary averages over, by serving experience."""
        return {"n_features": int(self.capacity.shape[0]), "n_alive": int(self.alive.sum()),
                "n_forgettable": int(self.forgettable.sum()),
                "alive_by_experience": torch.bincount(self.serves[self.alive],
                                                      minlength=self.n_experiences).tolist()}

    def top_features(self, n: int) -> list[int]:
        """Up to ``n`` features for the report: forgettable ones by mean activation, then the
        other alive ones."""
        order = self.activation.argsort(descending=True).tolist()
        sel, alive = self.forgettable.tolist(), self.alive.tolist()
        return ([i for i in order if sel[i]] + [i for i in order if alive[i] and not sel[i]])[:n]

    def capacity_by_experience(self) -> list[list[float | None]]:
        """Mean ``C_i^t`` over the alive features serving each experience: ``[E][T]``."""
        out = []
        for e in range(self.n_experiences):
            mask = self.alive & (self.serves == e)
            out.append(self.capacity_ckpt[mask].mean(dim=0).tolist() if bool(mask.any())
                       else [None] * len(self.after))
        return out


@torch.no_grad()
def feature_measures(cc: TopKCrosscoder, sources: Sources, codes: Tensor, probe: Probe,
                     heads: Tensor | None, crosscoder_fvu: float = float("nan"),
                     crosscoder_fvu_heldout: float | None = float("nan")) -> FeatureMeasures:
    """All measures for a trained crosscoder. ``codes``: shared code ``[N, m]`` of the probe;
    ``heads``: ``[T, C, d_head]`` head weights per checkpoint, or None (no readout; also None
    when no head-input layer was analyzed); the FVUs in-sample and held out (None/nan: none)."""
    L, T = sources.n_layers, sources.n_ckpts
    cap = capacity(cc, L, T)
    class_mean = group_means(codes, probe.y, probe.n_classes)
    exp_mean = group_means(codes, probe.experience, probe.n_experiences)
    serves = exp_mean.argmax(dim=1)
    ro = None
    if heads is not None and sources.head_layer in sources.layers:
        h = sources.layers.index(sources.head_layer)
        blocks = cc.W_dec.detach().split(cc.d_ins, dim=1)
        dirs = torch.stack([blocks[sources.index(h, t)] for t in range(T)], dim=1)  # [m, T, d]
        classes, weights = readout_classes(class_mean, serves, probe.classes_per_exp)
        ro = readout(dirs, heads, classes, weights)
    return FeatureMeasures(
        after=list(sources.after), layers=list(sources.layers), capacity=cap,
        activation=codes.mean(dim=0), firing=(codes > 0).float().mean(dim=0),
        class_mean=class_mean, exp_mean=exp_mean, serves=serves,
        ref=reference_ckpt(serves, sources.after), readout=ro,
        n_experiences=probe.n_experiences, crosscoder_fvu=crosscoder_fvu,
        crosscoder_fvu_heldout=float("nan") if crosscoder_fvu_heldout is None
        else crosscoder_fvu_heldout)
