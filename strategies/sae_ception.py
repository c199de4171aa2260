"""SAE-ception: sharpen a layer's features with targets decoded from a fresh sparse autoencoder.

    clbench run --stream split-digits --strategy sae-ception,sae-ception+replay --seeds 0,1,2
    clbench run --stream split-digits --strategy sae-ception --set sae-ception.cycles=2 epochs=2

SAE-ception (NeurIPS 2025 Mechanistic Interpretability Workshop, OpenReview TtV3UF7iKq), run
once per experience. Each of ``cycles`` cycles of an experience:

1. freeze a copy of the model (``F``, eval mode, no grad) and record its hooked-layer
   activations on (at most ``max_samples``, seeded) rows of the current experience's own
   training data, ``strategy.experience.dataset`` (:func:`clbench.run.fastdata.sample_rows`,
   :func:`clbench.run.fastdata.experience_rows`; never a replay buffer);
2. train a *fresh* SAE on them (TopK, or ReLU+L1 with ``sae="relu_l1"``; ``expansion`` x the
   layer width latents, ``k`` capped at the width, ``sae_steps`` steps;
   :func:`clbench.sae.fit.fit_layer_sae`);
3. feature sharpening: for each class ``c`` of those rows, ``S_c`` = the ``top_n`` latents with
   the largest mean code over the class's rows (classes ``0 .. max(y)``: the number of classes
   is read from the labels, not from a benchmark);
4. train with ``loss = task + lam * aux``::

       t_i = W_dec (z_i * 1[S_{y_i}]) + b_pre      z_i = SAE.encode(F_layer(x_i))
       aux = mean_{i in V} (1 - cos(h_i, t_i))      (aux="cosine", the paper's choice)
       aux = mean_{i in V} mean_d (h_id - t_id)^2   (aux="mse")

   where ``h_i`` is the hooked layer's output in the current forward pass, with its graph: the
   gradient reaches every parameter at and below the hook (the public v1 code detached it on
   CIFAR-10), and ``V`` is the mini-batch's samples whose class has an ``S_c``.

In your own Avalanche script::

    Naive(model, opt, criterion, plugins=[SAECeptionPlugin("fc1", SAECeptionConfig(lam=0.1))])

``layer`` is a key of a clbench model's ``hook_layers`` or, for any other ``nn.Module``, a module
path of ``model.named_modules()`` whose output is ``[B, d]``. On the command line
``sae-ception.layer=""`` means the model's ``default_layer`` (``fc1`` for the MLP, the first
hidden layer as in the paper's MLP setting). The SAE trains with batch ``min(256, N)`` and
learning rate ``1e-3`` (:data:`clbench.sae.fit.SAE_BATCH`, :data:`~clbench.sae.fit.SAE_LR`).

Choices that differ in form (not in effect) from the paper's code:

* Targets are computed on the fly for each mini-batch from the frozen copy ``F`` instead of
  being stored per sample: ``t_i`` depends only on ``x_i``, ``y_i``, ``F``, the SAE and ``S``,
  all fixed within a cycle, so the value is the same and no sample-id bookkeeping is needed.
  It costs one extra forward of ``F`` up to the hooked layer per mini-batch.
* Samples whose class has no ``S_c`` in this experience (old classes replayed by a buffer
  combined with this method) get no auxiliary term.
* With ``cycles > 1`` the experience's epochs are split evenly over the cycles (cycle ``c``
  starts at epoch ``c * epochs // cycles``); each cycle refits the SAE from the current model.
* Nothing is kept between experiences: the SAE, ``S`` and ``F`` are dropped after each one,
  so the method's ``state_bytes`` is 0 (the cost is compute, not memory).
* The SAE is fitted under a forked RNG, so with ``lam=0`` a run equals ``naive``'s.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from clbench.errors import ClbenchError
from clbench.models import default_layer
from clbench.run.fastdata import experience_rows, sample_rows
from clbench.sae.capture import LayerTap, capture, hook_module
from clbench.sae.fit import fit_layer_sae
from clbench.sae.topk import SAEBase
from clbench.sae.train import SAE_KINDS
from clbench.strategy_api import BuildContext, cli_defaults, from_params, register_strategy

Aux = Literal["cosine", "mse"]
AUX_KINDS = get_args(Aux)


@dataclass(frozen=True)
class SAECeptionConfig:
    """SAE-ception's settings (module docstring); each field is the command-line parameter
    ``sae-ception.<field>``, beside ``sae-ception.layer``.

    ``lam``: weight of the aux term; ``aux``: its form; ``top_n``: ``|S_c|``; ``sae``,
    ``expansion``, ``k``, ``sae_steps``: the SAE fitted each cycle; ``cycles``: SAE refits per
    experience (at most the epochs per experience); ``max_samples``: rows read per fit.
    """

    lam: float = 0.1
    aux: Aux = "cosine"
    top_n: int = 25
    sae: str = "topk"
    expansion: int = 4
    k: int = 32
    sae_steps: int = 200
    cycles: int = 1
    max_samples: int = 4000

    def __post_init__(self) -> None:
        if self.aux not in AUX_KINDS:
            raise ClbenchError(f"sae-ception.aux={self.aux}: choose one of {', '.join(AUX_KINDS)}")
        if self.sae not in SAE_KINDS:
            raise ClbenchError(f"sae-ception.sae={self.sae}: choose one of {', '.join(SAE_KINDS)}")
        for key in ("top_n", "expansion", "k", "sae_steps", "cycles", "max_samples"):
            if getattr(self, key) < 1:
                raise ClbenchError(f"sae-ception.{key}={getattr(self, key)}: must be at least 1")
        if not self.lam >= 0:
            raise ClbenchError(f"sae-ception.lam={self.lam}: must be >= 0")


def check_cycles(cycles: int, epochs: int) -> None:
    """ClbenchError unless ``cycles <= epochs`` (each cycle starts at its own epoch)."""
    if cycles > epochs:
        raise ClbenchError(f"sae-ception.cycles={cycles} needs at least that many epochs "
                           f"per experience; got epochs={epochs}")


def class_feature_masks(codes: Tensor, y: Tensor, top_n: int, n_classes: int) -> tuple[Tensor, Tensor]:
    """``S_c`` as masks: bool ``[n_classes, m]`` (row ``c``: the ``top_n`` latents with the largest
    mean code over rows of class ``c``) and bool ``[n_classes]`` (class ``c`` has rows)."""
    m = codes.shape[1]
    masks = torch.zeros(n_classes, m, dtype=torch.bool)
    has = torch.zeros(n_classes, dtype=torch.bool)
    for c in y.unique().tolist():
        top = codes[y == c].mean(dim=0).topk(min(top_n, m)).indices
        masks[c, top.cpu()] = True
        has[c] = True
    return masks.to(codes.device), has.to(codes.device)


@torch.no_grad()
def sharpened_targets(sae: SAEBase, acts: Tensor, y: Tensor, masks: Tensor) -> Tensor:
    """``t_i = decode(encode(acts_i) * masks[y_i])``, decoder bias included: ``[B, d]``."""
    return sae.decode(sae.encode(acts) * masks[y].to(acts.dtype))


def aux_loss(h: Tensor, t: Tensor, kind: str) -> Tensor:
    """``mean_i (1 - cos(h_i, t_i))`` or ``mean_i mean_d (h_id - t_id)^2``; ``h``, ``t``: ``[B, d]``."""
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(h, t, dim=1)).mean()
    return F.mse_loss(h, t)


class SAECeptionPlugin(SupervisedPlugin):
    """Adds ``lam * aux`` (see the module docstring) to the loss of every training mini-batch.

    A plain Avalanche plugin: ``SAECeptionPlugin("fc1", SAECeptionConfig(lam=0.1), seed=0)``."""

    def __init__(self, layer: str, config: SAECeptionConfig | None = None, *, seed: int = 0,
                 **overrides: Any) -> None:
        """``layer``: the hooked layer; ``config``: the settings (default
        :class:`SAECeptionConfig`), with ``overrides`` (its field names) replacing some of them;
        ``seed``: rows and SAE training (cycle ``c`` of experience ``e`` uses
        ``10000 * seed + 100 * e + c``)."""
        super().__init__()
        self.layer, self.seed = layer, seed
        self.config = replace(config or SAECeptionConfig(), **overrides)
        self.frozen: nn.Module | None = None
        self.sae: SAEBase | None = None
        self.masks: Tensor | None = None   # [n_classes, m] bool: S_c
        self.has: Tensor | None = None     # [n_classes] bool: S_c exists
        self.tap: LayerTap | None = None
        self.fits: list[dict[str, Any]] = []   # per fit: experience, cycle, seed, rows, final_loss
        self._epoch = 0

    def fit(self, model: nn.Module, x: Tensor, y: Tensor, seed: int) -> dict[str, Any]:
        """Freeze a copy of ``model``, train a fresh SAE on its activations of (a sample of at
        most ``max_samples`` rows of) ``x``, and set ``S_c`` from labels ``y`` (classes
        ``0 .. max(y)``); returns the SAE's training statistics."""
        c = self.config
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)
        if len(x) > c.max_samples:
            rows = sample_rows(len(x), c.max_samples, seed)
            x, y = x[rows], y[rows]
        fitted = fit_layer_sae(self.frozen, self.layer, x, kind=c.sae, expansion=c.expansion,
                               k=c.k, steps=c.sae_steps, seed=seed)
        with torch.no_grad():
            codes = fitted.sae.encode(fitted.acts)
        n_classes = int(y.max()) + 1 if len(y) else 0
        masks, has = class_feature_masks(codes, y.to(codes.device), c.top_n, n_classes)
        device = next(model.parameters()).device   # the SAE ran where x lives; train where the model is
        self.sae, self.masks, self.has = fitted.sae.to(device), masks.to(device), has.to(device)
        return fitted.stats

    def aux_term(self, h: Tensor, x: Tensor, y: Tensor) -> Tensor | None:
        """The auxiliary loss for a mini-batch: ``h [B, d]`` the live hooked activation (with
        graph), ``x`` its inputs, ``y`` its labels; None when no sample's class has an ``S_c``."""
        if self.sae is None or self.masks is None or self.has is None or self.frozen is None:
            raise RuntimeError("SAECeptionPlugin.aux_term called before fit")
        n = len(self.has)   # labels >= n (classes the fit's rows did not have) get no S_c
        valid = (y < n) & self.has[y.clamp(max=n - 1)]
        if not bool(valid.any()):
            return None
        t = sharpened_targets(self.sae, capture(self.frozen, self.layer, x[valid]), y[valid],
                              self.masks)
        return aux_loss(h[valid], t.to(h.dtype), self.config.aux)

    # ------------------------------------------------------------- Avalanche hooks

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        check_cycles(self.config.cycles, strategy.train_epochs)
        self._epoch = 0

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        cycles = self.config.cycles
        starts = [c * strategy.train_epochs // cycles for c in range(cycles)]
        if self._epoch not in starts:
            return
        if self.tap is not None:  # the frozen copy must not inherit the hook
            self.tap.remove()
        e, cycle = strategy.experience.current_experience, starts.index(self._epoch)
        seed = self.seed * 10_000 + 100 * e + cycle
        rows = sample_rows(len(strategy.experience.dataset), self.config.max_samples, seed)
        x, y, _ = experience_rows(strategy, rows)
        stats = self.fit(strategy.model, x, y, seed=seed)
        self.fits.append({"experience": e, "cycle": cycle, "seed": seed, "rows": len(rows),
                          "final_loss": stats["final_loss"]})
        self.tap = LayerTap(strategy.model, self.layer)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        h = self.tap.out if self.tap is not None else None
        if h is None or h.shape[0] != len(strategy.mb_y):
            raise RuntimeError("sae-ception: the hooked activation does not match the mini-batch")
        term = self.aux_term(h, strategy.mb_x, strategy.mb_y)
        if term is not None:
            strategy.loss = strategy.loss + self.config.lam * term

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.tap is not None:
            self.tap.remove()
        self.tap = self.frozen = self.sae = self.masks = self.has = None


def _check(p: dict[str, Any]) -> None:
    """Validate resolved ``sae-ception.*`` parameters by building the config."""
    from_params(SAECeptionConfig, p)


@register_strategy(
    "sae-ception", check=_check, defaults={"layer": "", **cli_defaults(SAECeptionConfig)},
    description="SAE-ception: pulls a layer toward class-sharpened SAE reconstructions "
                "(NeurIPS 2025 MechInterp Workshop)")
def sae_ception(p: dict[str, Any], ctx: BuildContext) -> SAECeptionPlugin:
    config = from_params(SAECeptionConfig, p)
    check_cycles(config.cycles, ctx.epochs)
    layer = p["layer"] or default_layer(ctx.model)
    hook_module(ctx.model, layer)  # an unknown layer fails here, with the known names
    return SAECeptionPlugin(layer, config, seed=ctx.seed)
