"""Avalanche's own continual-learning baselines, registered with clbench.

    clbench run --stream split-digits --strategy naive,ewc,replay+ewc --seeds 0,1,2

Nothing here re-implements an algorithm: each builder returns Avalanche's plugin, or, where
Avalanche ships the method only as a strategy class, a factory of that class. Defaults are the
values we run on the leaderboard; they were set by hand from the methods' papers and Avalanche's
examples, not tuned on our test sets, except EWC's and LwF's MNIST-family values, which come
from the validation-split search that also chose sae-reg's defaults (``ci/tune.py``). Buffer-based methods get the same memory budget of 200
samples (A-GEM spreads it over the experiences).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F

from avalanche.training import DER, Cumulative, JointTraining, Naive
from avalanche.training.plugins import (
    AGEMPlugin,
    EWCPlugin,
    GDumbPlugin,
    LwFPlugin,
    ReplayPlugin,
    SynapticIntelligencePlugin,
)

from avalanche.models.utils import avalanche_forward
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

from clbench.errors import ClbenchError
from clbench.run.fastdata import dataset_rows
from clbench.run.plugins import DivergedError
from clbench.strategy_api import BuildContext, register_strategy


class CPUSafeSI(SynapticIntelligencePlugin):
    """Avalanche 0.6's Synaptic Intelligence with one fix for CPU runs.

    Avalanche stores parameter snapshots as ``param.detach().cpu().flatten()``. On a GPU that is
    a copy; on the CPU it is a *view* of the live parameter, so the "old" weights always equal
    the new ones, every step's change ``theta_new - theta_old`` is 0, the path integral
    ``omega = sum_t g_t * delta_theta_t`` is 0, and SI silently degenerates to fine-tuning. We
    copy the two snapshots right after Avalanche takes them.

    Once the path integral is real, a second problem shows: Avalanche clamps the importance
    ``Omega`` only from above (at 0.001), and noisy steps make some ``Omega`` negative, so the
    penalty ``lambda/2 * sum Omega (theta - theta*)^2`` is unbounded below and training diverges
    (seen on split-digits at every lambda). SI's importance is non-negative by construction
    (Zenke et al. 2017, eq. 5 with omega >= 0 in expectation), so we also clamp it at 0 from
    below. Everything else is Avalanche's.
    """

    @staticmethod
    def _freeze(params: dict) -> None:
        for pd in params.values():
            pd.data = pd.data.clone()

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        super().before_training_exp(strategy, **kwargs)
        self._freeze(self.ewc_data[0])              # theta* at the start of the experience

    def before_training_iteration(self, strategy, **kwargs) -> None:  # noqa: ANN001
        super().before_training_iteration(strategy, **kwargs)
        self._freeze(self.syn_data["old_theta"])    # theta before this step

    def after_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        super().after_training_exp(strategy, **kwargs)
        for pd in self.ewc_data[1].values():        # Omega >= 0
            pd.data = pd.data.clamp(min=0.0)


def positive(method: str, *names: str) -> Callable[[dict[str, Any]], None]:
    """A ``check=`` refusing ``method``'s parameters ``names`` unless > 0: a temperature the
    logits are divided by, a batch size; at 0 every cell would train, then fail."""
    def check(p: dict[str, Any]) -> None:
        for k in names:
            if not p[k] > 0:
                raise ClbenchError(f"--set {method}.{k}={p[k]}: must be positive")
    return check


@register_strategy("naive", kind="template",
                   description="fine-tuning on each experience in turn (lower bound)")
def naive(p: dict[str, Any], ctx: BuildContext) -> Any:
    return Naive


@register_strategy("joint", kind="template", offline=True,
                   no_task_il="Avalanche's JointTraining adapts the heads to one experience only",
                   description="one model trained on all experiences at once (offline upper bound)")
def joint(p: dict[str, Any], ctx: BuildContext) -> Any:
    return JointTraining


@register_strategy("cumulative", kind="template",
                   description="retrains on the union of all experiences seen so far")
def cumulative(p: dict[str, Any], ctx: BuildContext) -> Any:
    return Cumulative


# MNIST-family values of ewc and lwf: the best of a 5-trial seeded search on perm-fmnist's
# validation split, the budget sae-reg had (ci/tune.py; leaderboard/tuning.md). Text family:
# the best of lambda 1e2..1e6 on text-v1's validation split (leaderboard/tuning-lm.md)
@register_strategy("ewc", defaults={"ewc_lambda": 100.0},
                   family_defaults={"mnist": {"ewc_lambda": 145.0},
                                    "text": {"ewc_lambda": 100000.0}},
                   description="Elastic Weight Consolidation, one Fisher per experience "
                               "(Kirkpatrick et al. 2017)")
def ewc(p: dict[str, Any], ctx: BuildContext) -> EWCPlugin:
    return EWCPlugin(ewc_lambda=p["ewc_lambda"], mode="separate")


# mnist family: the best of 5 trials (2 per searched parameter) on perm-fmnist's validation
# split, leaderboard/tuning.md (ci/tune.py --per-dim 2). Text family: the best of lambda 1e2,
# 1e4, 1e5 (decay 0.9) on text-v1's validation split (leaderboard/tuning-lm.md)
@register_strategy("ewc-online", defaults={"ewc_lambda": 100.0, "decay_factor": 0.9},
                   family_defaults={"mnist": {"ewc_lambda": 3644.0, "decay_factor": 0.857},
                                    "text": {"ewc_lambda": 100000.0}},
                   description="online EWC: one running Fisher (Schwarz et al. 2018)")
def ewc_online(p: dict[str, Any], ctx: BuildContext) -> EWCPlugin:
    return EWCPlugin(ewc_lambda=p["ewc_lambda"], mode="online", decay_factor=p["decay_factor"])


@register_strategy("si", defaults={"si_lambda": 100.0},
                   description="Synaptic Intelligence (Zenke et al. 2017); Avalanche plugin with "
                               "two CPU fixes (see CPUSafeSI)")
def si(p: dict[str, Any], ctx: BuildContext) -> SynapticIntelligencePlugin:
    return CPUSafeSI(si_lambda=p["si_lambda"])


# text family: the registered alpha 1 was the best of alpha 1, 4, 16 (temperature 2) on text-v1's
# validation split (leaderboard/tuning-lm.md), so the text family keeps it
@register_strategy("lwf", defaults={"alpha": 1.0, "temperature": 2.0},
                   check=positive("lwf", "temperature"),
                   family_defaults={"mnist": {"alpha": 0.1021, "temperature": 3.23}},
                   description="Learning without Forgetting: distillation from the previous "
                               "model (Li & Hoiem 2016)")
def lwf(p: dict[str, Any], ctx: BuildContext) -> LwFPlugin:
    return LwFPlugin(alpha=p["alpha"], temperature=p["temperature"])


@register_strategy("replay", defaults={"mem_size": 200},
                   description="experience replay from a 200-sample buffer balanced over experiences")
def replay(p: dict[str, Any], ctx: BuildContext) -> ReplayPlugin:
    return ReplayPlugin(mem_size=p["mem_size"])


@register_strategy("agem", defaults={"mem_size": 200, "sample_size": 64},
                   check=positive("agem", "sample_size"),
                   description="Averaged GEM: gradient projection against a memory sample "
                               "(Chaudhry et al. 2019)")
def agem(p: dict[str, Any], ctx: BuildContext) -> AGEMPlugin:
    per_exp = max(1, p["mem_size"] // ctx.stream.n_experiences)
    return AGEMPlugin(patterns_per_experience=per_exp, sample_size=p["sample_size"])


@register_strategy("der", kind="template",
                   no_task_il="Avalanche's DER calls the model without task labels",
                   defaults={"mem_size": 200, "alpha": 0.1, "beta": 0.5},
                   description="Dark Experience Replay++: replays logits and labels "
                               "(Buzzega et al. 2020)")
def der(p: dict[str, Any], ctx: BuildContext) -> Any:
    return partial(DER, mem_size=p["mem_size"], alpha=p["alpha"], beta=p["beta"],
                   batch_size_mem=ctx.batch_size)


class ScheduledGDumb(GDumbPlugin):
    """GDumb with the schedule its authors train the memory with (Prabhu et al. 2020, ECCV).

    Avalanche's plugin keeps the greedy class-balanced memory and resets the model to its
    initial weights before each experience, but then trains the memory for the *run's* epochs
    at the run's batch size and learning rate: on the MNIST family (1 epoch, batch 128) that is
    2 SGD steps on 200 samples, and GDumb sits at chance (9.3 % on perm-fmnist). The paper (and
    Mammoth's ``gdumb``, whose defaults we take) fits the memory from scratch for up to 256
    epochs at batch 16 with SGDR: one warm-up epoch at ``maxlr / 10``, then cosine annealing
    with warm restarts (``T_0 = 1``, ``T_mult = 2``) between ``maxlr = 0.05`` and
    ``minlr = 0.0005``. So after each experience this plugin resets the model to the initial
    weights again (what the strategy's own epochs on the memory learned is discarded) and runs
    that fit on the memory's rows, shuffled by a generator seeded from ``seed`` and the
    experience. CutMix, which the paper adds for images, is left out: the MNIST-family streams
    are trained flattened or permuted, where pasting patches has no meaning.
    """

    def __init__(self, mem_size: int, epochs: int, batch_size: int, maxlr: float, minlr: float,
                 seed: int) -> None:
        super().__init__(mem_size=mem_size)
        self.epochs, self.batch_size, self.maxlr, self.minlr = epochs, batch_size, maxlr, minlr
        self.seed = seed

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        super().after_training_exp(strategy, **kwargs)
        model = strategy.model
        model.load_state_dict(self.init_model.state_dict())      # from scratch, again
        x, y, t = dataset_rows(strategy, self.storage_policy.buffer)
        x, y = x.to(strategy.device), y.to(strategy.device)
        e = strategy.experience.current_experience
        g = torch.Generator().manual_seed(self.seed * 1000 + e)
        opt = torch.optim.SGD(model.parameters(), lr=self.maxlr)
        sgdr = CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2, eta_min=self.minlr)
        model.train()
        for epoch in range(self.epochs):
            if epoch <= 1:   # warm-up epoch at maxlr / 10, then maxlr
                for group in opt.param_groups:
                    group["lr"] = self.maxlr * (0.1 if epoch == 0 else 1.0)
            else:
                sgdr.step()
            for b in torch.randperm(len(y), generator=g).split(self.batch_size):
                loss = F.cross_entropy(avalanche_forward(model, x[b], t[b]), y[b])
                if not math.isfinite(loss.item()):
                    raise DivergedError(f"gdumb: loss became {loss.item()} fitting the memory "
                                        f"after experience {e}, epoch {epoch}; lower gdumb.maxlr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        opt.zero_grad(set_to_none=True)


# schedule: Prabhu et al. 2020 (SGDR, batch 16, up to 256 epochs); values: Mammoth's gdumb defaults
# text family (a pretrained LM's top blocks, not a network from scratch): 256 epochs of SGD at
# 0.05 is the from-scratch image recipe; the memory is fitted from the pretrained weights with a
# short, gentle schedule instead (untuned)
@register_strategy("gdumb", defaults={"mem_size": 200, "epochs": 256, "batch_size": 16,
                                      "maxlr": 0.05, "minlr": 0.0005},
                   check=positive("gdumb", "batch_size"),
                   family_defaults={"text": {"epochs": 8, "maxlr": 0.01, "minlr": 0.0001}},
                   description="GDumb: refits a class-balanced 200-sample memory from scratch "
                               "after each experience, with its paper's schedule "
                               "(Prabhu et al. 2020)")
def gdumb(p: dict[str, Any], ctx: BuildContext) -> GDumbPlugin:
    return ScheduledGDumb(mem_size=p["mem_size"], epochs=p["epochs"], batch_size=p["batch_size"],
                          maxlr=p["maxlr"], minlr=p["minlr"], seed=ctx.seed)
