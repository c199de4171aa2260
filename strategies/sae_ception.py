"""SAE-ception: sharpen a layer's features with targets decoded from a fresh sparse autoencoder.

    clbench run --stream split-digits --strategy sae-ception,sae-ception+replay --seeds 0,1,2
    clbench run --stream split-digits --strategy sae-ception --set sae-ception.cycles=2 epochs=2

SAE-ception (NeurIPS 2025 Mechanistic Interpretability Workshop, OpenReview TtV3UF7iKq), run
once per experience. Each of ``cycles`` cycles of an experience:

1. freeze a copy of the model (``F``, eval mode, no grad) and record its hooked-layer
   activations on (at most ``max_samples``, seeded) training rows of the current experience;
2. train a *fresh* SAE on them (TopK, or ReLU+L1 with ``sae="relu_l1"``; ``expansion`` x the
   layer width latents, ``k`` capped at the width, ``sae_steps`` steps);
3. feature sharpening: for each class ``c`` of those rows, ``S_c`` = the ``top_n`` latents with
   the largest mean code over the class's rows;
4. train with ``loss = task + lam * aux``::

       t_i = W_dec (z_i * 1[S_{y_i}]) + b_pre      z_i = SAE.encode(F_layer(x_i))
       aux = mean_{i in V} (1 - cos(h_i, t_i))      (aux="cosine", the paper's choice)
       aux = mean_{i in V} mean_d (h_id - t_id)^2   (aux="mse")

   where ``h_i`` is the hooked layer's output in the current forward pass, with its graph: the
   gradient reaches every parameter at and below the hook (the public v1 code detached it on
   CIFAR-10), and ``V`` is the mini-batch's samples whose class has an ``S_c``.

``layer=""`` means the model's default: :data:`clbench.mono_eval.DEFAULT_LAYER` for
``ctx.extras["model_name"]`` when the runner supplies it, else the model's first hook layer
(``fc1`` for the MLP, the first hidden layer as in the paper's MLP setting). The SAE trains
with batch ``SAE_BATCH`` and learning rate ``SAE_LR``.

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
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from clbench.errors import ClbenchError
from clbench.mono_eval import default_layer
from clbench.sae.capture import LayerTap, capture, hook_module
from clbench.sae.topk import SAEBase
from clbench.sae.train import SAE_KINDS, SAETrainConfig, train_sae
from clbench.strategy_api import BuildContext, register_strategy
from clbench.streams import Stream

AUX_KINDS = ("cosine", "mse")
#: SAE training batch size and learning rate (fixed; the paper's code does not sweep them)
SAE_BATCH, SAE_LR = 256, 1e-3


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
    """Adds ``lam * aux`` (see the module docstring) to the loss of every training mini-batch."""

    def __init__(self, stream: Stream, layer: str, *, lam: float, aux: str, top_n: int, sae: str,
                 expansion: int, k: int, sae_steps: int, cycles: int, max_samples: int,
                 seed: int) -> None:
        super().__init__()
        self.stream, self.layer, self.lam, self.aux, self.top_n = stream, layer, lam, aux, top_n
        self.sae_kind, self.expansion, self.k, self.sae_steps = sae, expansion, k, sae_steps
        self.cycles, self.max_samples, self.seed = cycles, max_samples, seed
        self.frozen: nn.Module | None = None
        self.sae: SAEBase | None = None
        self.masks: Tensor | None = None   # [n_classes, m] bool: S_c
        self.has: Tensor | None = None     # [n_classes] bool: S_c exists
        self.tap: LayerTap | None = None
        self._epoch = 0

    def fit(self, model: nn.Module, x: Tensor, y: Tensor, seed: int) -> dict[str, Any]:
        """Freeze a copy of ``model``, train a fresh SAE on its activations of (a sample of)
        ``x``, and set ``S_c`` from labels ``y``; returns the SAE's training statistics."""
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            g = torch.Generator().manual_seed(seed)
            if len(x) > self.max_samples:
                rows = torch.randperm(len(x), generator=g)[:self.max_samples]
                x, y = x[rows], y[rows]
            acts = capture(self.frozen, self.layer, x)
            d = acts.shape[1]
            cfg = SAETrainConfig(n_latents=self.expansion * d, k=min(self.k, d), lr=SAE_LR,
                                 steps=self.sae_steps, batch_size=min(SAE_BATCH, len(acts)),
                                 seed=seed)
            self.sae, stats = train_sae(acts, cfg, kind=self.sae_kind)
            self.sae.requires_grad_(False).zero_grad(set_to_none=True)  # training's last grads
            with torch.no_grad():
                codes = self.sae.encode(acts)
            self.masks, self.has = class_feature_masks(codes, y.to(codes.device), self.top_n,
                                                       self.stream.n_classes)
        device = next(model.parameters()).device   # the SAE ran where x lives; train where the model is
        self.sae, self.masks, self.has = self.sae.to(device), self.masks.to(device), self.has.to(device)
        return stats

    def aux_term(self, h: Tensor, x: Tensor, y: Tensor) -> Tensor | None:
        """The auxiliary loss for a mini-batch: ``h [B, d]`` the live hooked activation (with
        graph), ``x`` its inputs, ``y`` its labels; None when no sample's class has an ``S_c``."""
        if self.sae is None or self.masks is None or self.has is None or self.frozen is None:
            raise RuntimeError("SAECeptionPlugin.aux_term called before fit")
        valid = self.has[y]
        if not bool(valid.any()):
            return None
        t = sharpened_targets(self.sae, capture(self.frozen, self.layer, x[valid]), y[valid],
                              self.masks)
        return aux_loss(h[valid], t.to(h.dtype), self.aux)

    # ------------------------------------------------------------- Avalanche hooks

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch = 0

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        starts = [c * strategy.train_epochs // self.cycles for c in range(self.cycles)]
        if self._epoch not in starts:
            return
        if self.tap is not None:  # the frozen copy must not inherit the hook
            self.tap.remove()
        e = strategy.experience.current_experience
        rows = self.stream.train_idx[e]
        self.fit(strategy.model, self.stream.x_train[rows], self.stream.y_train[rows],
                 seed=self.seed * 10_000 + 100 * e + starts.index(self._epoch))
        self.tap = LayerTap(strategy.model, self.layer)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        h = self.tap.out if self.tap is not None else None
        if h is None or h.shape[0] != len(strategy.mb_y):
            raise RuntimeError("sae-ception: the hooked activation does not match the mini-batch")
        term = self.aux_term(h, strategy.mb_x, strategy.mb_y)
        if term is not None:
            strategy.loss = strategy.loss + self.lam * term

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.tap is not None:
            self.tap.remove()
        self.tap = self.frozen = self.sae = self.masks = self.has = None


def _check(p: dict[str, Any]) -> None:
    if p["aux"] not in AUX_KINDS:
        raise ClbenchError(f"sae-ception.aux={p['aux']}: choose one of {', '.join(AUX_KINDS)}")
    if p["sae"] not in SAE_KINDS:
        raise ClbenchError(f"sae-ception.sae={p['sae']}: choose one of {', '.join(SAE_KINDS)}")
    for key in ("top_n", "expansion", "k", "sae_steps", "cycles", "max_samples"):
        if p[key] < 1:
            raise ClbenchError(f"sae-ception.{key}={p[key]}: must be at least 1")
    if not p["lam"] >= 0:
        raise ClbenchError(f"sae-ception.lam={p['lam']}: must be >= 0")


@register_strategy(
    "sae-ception", check=_check,
    defaults={"layer": "", "lam": 0.1, "aux": "cosine", "top_n": 25, "sae": "topk",
              "expansion": 4, "k": 32, "sae_steps": 200, "cycles": 1, "max_samples": 4000},
    description="SAE-ception: pulls a layer toward class-sharpened SAE reconstructions "
                "(NeurIPS 2025 MechInterp Workshop)")
def sae_ception(p: dict[str, Any], ctx: BuildContext) -> SAECeptionPlugin:
    _check(p)
    if p["cycles"] > ctx.epochs:
        raise ClbenchError(f"sae-ception.cycles={p['cycles']} needs at least that many epochs "
                           f"per experience; got epochs={ctx.epochs}")
    layer = p["layer"] or default_layer(ctx.extras.get("model_name", ""), ctx.model)
    hook_module(ctx.model, layer)  # an unknown layer fails here, with the known names
    return SAECeptionPlugin(ctx.stream, layer, lam=p["lam"], aux=p["aux"], top_n=p["top_n"],
                            sae=p["sae"], expansion=p["expansion"], k=p["k"],
                            sae_steps=p["sae_steps"], cycles=p["cycles"],
                            max_samples=p["max_samples"], seed=ctx.seed)
