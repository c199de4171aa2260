"""TEMPLATE: a continual-learning method for clbench, as one Avalanche plugin in one file.

Copy this file to ``strategies/my_method.py``, give the method its own NAME, replace the
plugin's hooks with your method, then::

    clbench run --stream split-digits --strategy my-method --seeds 0 --set epochs=1   # try it
    clbench submit strategies/my_method.py --suite cpu-v1        # run, verify and publish it

The example is the L2 anchor (the "L2" baseline of Kirkpatrick et al. 2017, PNAS 114(13)):
after each experience keep a copy ``θ*`` of the weights; later experiences minimise::

    loss = task loss + (lam / 2) * Σ_i (θ_i − θ*_i)²

which is EWC with every Fisher entry set to 1.

What a method gets: ``p``, its parameters (typed by ``defaults``; ``--set template.lam=0.1``
overrides one, ``family_defaults`` change them per stream family: ``embedded``, ``mnist``,
``cifar``), and ``ctx`` (:class:`clbench.BuildContext`: the stream, the model, batch size,
epochs, seed). The returned plugin is added to Avalanche's stock ``Naive`` template; any
``before_*`` / ``after_*`` hook of ``SupervisedPlugin`` may be overridden (the strategy object
gives ``model``, ``mb_x``, ``mb_y``, ``mb_output``, ``loss``, ``experience``, ...).

What clbench measures: accuracy on every experience after each one (the accuracy matrix),
time, and ``state_bytes``: every tensor, numpy array, stored sample (a dataset derived from
the experiences') and model copy the plugin holds between experiences, in its attributes and
the dicts, lists and objects below them (here the anchor: one copy of the parameters). An SAE
counts as ``sae``; a class of yours sets ``__clbench_state_kind__`` to choose its kind (see
:mod:`clbench.run.cost`, which also lists what is not counted).

Rules for the leaderboard (``clbench submit`` checks the last one by running a seed again):
train only on the current experience's data (plus what the method stores, which is
counted); use torch's RNG (clbench seeds it) and no wall clock; results must be reproducible.
"""
from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin

from clbench import BuildContext, register_strategy

#: the method's name: lowercase words joined by '-', no '+'; it must differ from every other
NAME = "template"


class L2AnchorPlugin(SupervisedPlugin):
    """Adds ``(lam / 2) * Σ (θ − θ*)²`` to the loss once an experience has been learned."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam
        #: parameter name -> θ* (kept between experiences, so counted in state_bytes)
        self.anchor: dict[str, torch.Tensor] = {}

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if not self.anchor:
            return
        penalty = sum(((p - self.anchor[n]) ** 2).sum()
                      for n, p in strategy.model.named_parameters() if n in self.anchor)
        strategy.loss = strategy.loss + 0.5 * self.lam * penalty

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.anchor = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}


@register_strategy(NAME, description="TEMPLATE.py's example: L2 anchor to the previous "
                                     "weights (copy the file to write a method)",
                   defaults={"lam": 1.0})
def build(p: dict[str, Any], ctx: BuildContext) -> L2AnchorPlugin:
    """Build the plugin from the method's parameters; ``ctx`` is unused by this method."""
    return L2AnchorPlugin(lam=p["lam"])
