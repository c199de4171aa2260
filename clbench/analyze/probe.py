"""Stage 1 of ``clbench analyze``: the probe set, a fixed, seeded sample of test rows.

    >>> from clbench.streams import build_stream
    >>> from clbench.analyze.probe import probe_set
    >>> probe = probe_set(build_stream("split-digits", seed=0), size=500, seed=0)
    >>> probe.x.shape, probe.y.shape, probe.experience.shape     # [N, 1, 8, 8], [N], [N]
    >>> fit, held = heldout_split(probe, fraction=0.2, seed=0)   # row indices into the probe

The probe covers every experience and, inside each, every class equally: with ``G`` groups
(``(experience, class)`` pairs; 10 for a 5 x 2 split, 100 for 10 permutations x 10 classes) it
holds ``size // G`` test rows of each group (fewer where a group has fewer rows), drawn
without replacement by a ``torch.Generator`` seeded with ``seed``. Rows come ordered by
experience, then class, then row index, so the same ``(stream, size, seed)`` always gives the
same probe. Every checkpoint of a run is measured on this one probe; the crosscoder is trained
on its *fit* rows and its FVU is also measured on the *held-out* rows (:func:`heldout_split`:
``round(fraction * n_g)`` rows of each group ``g``, at most ``n_g - 1``, drawn by a generator
seeded with ``seed``), rows the crosscoder never saw.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clbench.errors import ClbenchError
from clbench.streams import Stream


@dataclass(frozen=True)
class Probe:
    """Probe rows of a stream's test store.

    ``x``: ``[N, *input_shape]``; ``y``: ``[N]`` labels; ``experience``: ``[N]`` the experience
    whose test set the row belongs to; ``rows``: ``[N]`` indices into ``stream.x_test``.
    """

    x: Tensor
    y: Tensor
    experience: Tensor
    rows: Tensor
    n_experiences: int
    n_classes: int
    classes_per_exp: list[list[int]]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def probe_set(stream: Stream, size: int, seed: int) -> Probe:
    """A balanced probe of about ``size`` test rows of ``stream`` (see the module docstring)."""
    groups = [(e, c) for e in range(stream.n_experiences) for c in stream.classes_per_exp[e]]
    if size < len(groups):
        raise ClbenchError(f"--probe-size {size} is below one row per (experience, class) pair "
                           f"of {stream.name} ({len(groups)}); use --probe-size {len(groups)} "
                           "or more")
    per_group = size // len(groups)
    g = torch.Generator().manual_seed(seed)
    rows, exps = [], []
    for e, c in groups:
        idx = stream.test_idx[e]
        idx = idx[stream.y_test[idx] == c]
        pick = idx[torch.randperm(len(idx), generator=g)[:per_group]].sort().values
        rows.append(pick)
        exps.append(torch.full((len(pick),), e, dtype=torch.long))
    r = torch.cat(rows)
    return Probe(x=stream.x_test[r], y=stream.y_test[r].long(), experience=torch.cat(exps),
                 rows=r, n_experiences=stream.n_experiences, n_classes=stream.n_classes,
                 classes_per_exp=[list(map(int, cs)) for cs in stream.classes_per_exp])


def heldout_split(probe: Probe, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Probe row indices ``(fit, held_out)``, sorted: of each ``(experience, class)`` group's
    ``n_g`` rows, ``min(round(fraction * n_g), n_g - 1)`` are held out (seeded), so both parts
    stay balanced and every group keeps a fit row. ``fraction = 0``: nothing is held out."""
    if not 0.0 <= fraction < 1.0:
        raise ClbenchError(f"--heldout {fraction}: must be in [0, 1)")
    g = torch.Generator().manual_seed(seed)
    key = probe.experience * probe.n_classes + probe.y
    held = []
    for k in torch.unique(key).tolist():
        idx = (key == k).nonzero().flatten()
        n_held = min(round(fraction * len(idx)), len(idx) - 1)
        held.append(idx[torch.randperm(len(idx), generator=g)[:n_held]])
    mask = torch.zeros(len(probe), dtype=torch.bool)
    mask[torch.cat(held)] = True
    return (~mask).nonzero().flatten(), mask.nonzero().flatten()
