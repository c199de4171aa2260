"""Run flags: signs that a run's numbers describe a broken network, not a method.

    >>> R = [[0.99, 0.0], [0.60, 0.498]]
    >>> collapsed_experiences(R, [[0, 1], [2, 3]], top_share=[0.51, 1.0])
    [1]
    >>> run_flags(R, [[0, 1], [2, 3]], top_share=[0.51, 1.0])
    ['collapsed:exp1']
    >>> collapsed_experiences(R, [[0, 1], [2, 3]], top_share=[0.51, 0.55])  # hard, not broken
    []

**Collapse.** Right after training on experience ``e`` a working learner does well on it. With
``C_e`` classes in the experience (balanced test sets), a network that answers one class for
every input scores about ``1 / C_e`` on it. Low accuracy alone is not enough (in a
class-incremental stream a model that really learned hard data, MNIST-1D say, can score near
``1 / C_e`` on a two-class experience), so the runner also records ``s_e``, the share of the most
frequent predicted class on experience ``e``'s test set at that moment. Experience ``e`` is
flagged *collapsed* when

    R[e][e] <= 1 / C_e + COLLAPSE_MARGIN   and   s_e >= CONSTANT_SHARE

(``R[0][e]`` for an offline method, which has one row): the network is at chance there because
it gives (nearly) one answer to everything.

**Dead layer.** A hook layer whose pooled output does not depend on the input (every unit's
standard deviation over held-out rows below ``DEAD_STD``, e.g. a ReLU layer that outputs 0
everywhere) carries no signal to the layers above. The runner checks every hook layer of the
model after each experience on test rows of that experience (:func:`dead_layers`) and stores
``dead:<layer>@exp<e>`` in the result's ``flags``; that needs the model, so it exists only in
files made since.

Both need the trained model, so flags exist only in result files made since they were added.
A flagged run is still a result (a method that kills its network has failed at its job), but
tables mark it so nobody reads it as a method's typical behaviour.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from clbench.sae.capture import LayerTap

#: accuracy above the one-class level that still counts as collapsed (absolute)
COLLAPSE_MARGIN = 0.05
#: share of the most frequent prediction from which an output counts as (nearly) constant
CONSTANT_SHARE = 0.9
#: a unit whose output varies less than this over the probe rows carries no signal
DEAD_STD = 1e-6
#: held-out rows the dead-layer check reads per experience
DEAD_PROBE_ROWS = 256


def collapsed_experiences(R: Sequence[Sequence[float]],
                          classes_per_exp: Sequence[Sequence[Any]],
                          top_share: Sequence[float]) -> list[int]:
    """Experiences ``e`` with ``R[e][e] <= 1/C_e + COLLAPSE_MARGIN`` and ``top_share[e] >=
    CONSTANT_SHARE`` (``R[0][e]`` when ``R`` has one row for several experiences: an offline
    method)."""
    T = len(classes_per_exp)
    if not R or T == 0:
        return []
    offline = len(R) == 1 and T > 1
    out = []
    for e in range(min(T, len(R[0]))):
        row = R[0] if offline else (R[e] if e < len(R) else None)
        if row is None:
            continue
        chance = 1.0 / max(len(classes_per_exp[e]), 1)
        constant = e < len(top_share) and top_share[e] >= CONSTANT_SHARE
        if row[e] <= chance + COLLAPSE_MARGIN and constant:
            out.append(e)
    return out


def run_flags(R: Sequence[Sequence[float]], classes_per_exp: Sequence[Sequence[Any]],
              top_share: Sequence[float], found: Sequence[str] = ()) -> list[str]:
    """A run's flags: ``found`` (the dead layers) plus ``collapsed:exp<e>``."""
    flags = list(dict.fromkeys(found))
    for e in collapsed_experiences(R, classes_per_exp, top_share):
        if f"collapsed:exp{e}" not in flags:
            flags.append(f"collapsed:exp{e}")
    return flags


@torch.no_grad()
def dead_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Hook layers of ``model`` whose pooled output on rows ``x`` has every unit's standard
    deviation below ``DEAD_STD`` (one forward pass; eval mode, the caller's mode restored)."""
    layers = list(getattr(model, "hook_layers", {}))
    if not layers or len(x) < 2:
        return []
    taps = {name: LayerTap(model, name) for name in layers}
    was_training = model.training
    model.eval()
    forward = getattr(model, "forward_features", model)
    try:
        forward(x.to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for tap in taps.values():
            tap.remove()
    dead = []
    for name, tap in taps.items():
        out = tap.out
        if out is not None and out.dim() == 2 and float(out.float().std(dim=0).max()) < DEAD_STD:
            dead.append(name)
    return dead
