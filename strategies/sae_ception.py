"""SAE-ception: sharpen a layer's features with targets decoded from a fresh sparse autoencoder.

    clbench run --stream split-digits --strategy sae-ception,sae-ception+replay --seeds 0,1,2
    clbench run --stream split-digits --strategy sae-ception --set sae-ception.cycles=3 \
                --set sae-ception.cycle_epochs=3

SAE-ception (NeurIPS 2025 Mechanistic Interpretability Workshop, OpenReview TtV3UF7iKq), run on
each experience. As in the paper, the targets come from a *trained* model: the experience is
first trained as the strategy trains it (its own ``epochs``, no auxiliary term; the paper's
baseline ``F_0``), and then ``cycles`` cycles run on it. Cycle ``c = 0 .. cycles - 1``:

1. freeze a copy of the current model (``F_c``, eval mode, no grad) and record its hooked-layer
   activations on (at most ``max_samples``, seeded) rows of the current experience's own
   training data, ``strategy.experience.dataset`` (:func:`clbench.run.fastdata.sample_rows`,
   :func:`clbench.run.fastdata.experience_rows`; never a replay buffer); ``F_c``'s accuracy on
   those rows is logged (``fits[i]["accuracy"]``: it is a trained model, well above chance);
2. train a *fresh* SAE on them (TopK, or ReLU+L1 with ``sae="relu_l1"``; ``expansion`` x the
   layer width latents, ``k`` capped at the width, ``sae_steps`` steps;
   :func:`clbench.sae.fit.fit_layer_sae`); its FVU on those activations is logged;
3. feature sharpening: for each class ``k`` of those rows, ``S_k`` = the ``top_n`` latents with
   the largest mean code over the class's rows (classes ``0 .. max(y)``: the number of classes
   is read from the labels, not from a benchmark);
4. train ``cycle_epochs`` epochs with ``loss = task + lam * aux``::

       t_i = W_dec (z_i * 1[S_{y_i}]) + b_pre      z_i = SAE.encode(F_c,layer(x_i))
       aux = mean_{i in V} (1 - cos(h_i, t_i))      (aux="cosine", the paper's choice)
       aux = mean_{i in V} mean_d (h_id - t_id)^2   (aux="mse")

   where ``h_i`` is the hooked layer's output in the current forward pass, with its graph: the
   gradient reaches every parameter at and below the hook (the public v1 code detached it on
   CIFAR-10), and ``V`` is the mini-batch's samples whose class has an ``S_k``.

So an experience trains ``epochs + cycles * cycle_epochs`` epochs, the last
``cycles * cycle_epochs`` of them with the auxiliary term; the cycle count does not depend on
``epochs`` (``cycles=3`` with the MNIST family's ``epochs=1`` is fine; ``cycles=0`` is naive).

How the cycles run inside a stock Avalanche template: ``before_training_exp`` raises the
strategy's ``train_epochs`` by ``cycles * cycle_epochs`` (restored in ``after_training_exp``),
so the template's own epoch loop runs the cycle epochs, and ``before_backward`` adds ``lam *
aux`` in them. Every other plugin therefore sees the cycle epochs as ordinary epochs: replay's
loader keeps mixing its buffer in, EWC's penalty and every ``before_backward`` still act, the
runner's divergence guard sees the total loss after each backward, and the ``after_training_exp``
work of the other plugins (replay's buffer update, EWC's Fisher) happens after the cycles, on
the final model. (A private loop in ``after_training_exp`` would skip the other plugins' hooks
and run before or after their ``after_training_exp`` depending on the plugin order.) The cycle
epochs use the strategy's data loader, optimizer, batch size and shuffling generator. A plugin
that stops training early (``strategy.stop_training()``) also ends the cycles.

``cycle_epochs`` defaults to 1: the paper's cycles are short fine-tunes of an already trained
model (v1 CIFAR-10: 3 epochs per cycle after a trained baseline; METHODS.md), and 1 is the
MNIST family's ``epochs``; ``--set sae-ception.cycle_epochs=3`` gives the paper's CIFAR value.

In your own Avalanche script::

    Naive(model, opt, criterion, plugins=[SAECeptionPlugin("fc1", SAECeptionConfig(lam=0.1))])

``layer`` is a key of a clbench model's ``hook_layers`` or, for any other ``nn.Module``, a module
path of ``model.named_modules()`` whose output is ``[B, d]``. On the command line
``sae-ception.layer=""`` means the model's ``default_layer`` (``fc1`` for the MLP, the first
hidden layer as in the paper's MLP setting). The SAE trains with batch ``min(256, N)`` and
learning rate ``1e-3`` (:data:`clbench.sae.fit.SAE_BATCH`, :data:`~clbench.sae.fit.SAE_LR`).

Choices that differ in form (not in effect) from the paper's code:

* Targets are computed on the fly for each mini-batch from the frozen copy ``F_c`` instead of
  being stored per sample: ``t_i`` depends only on ``x_i``, ``y_i``, ``F_c``, the SAE and ``S``,
  all fixed within a cycle, so the value is the same and no sample-id bookkeeping is needed.
  It costs one extra forward of ``F_c`` up to the hooked layer per mini-batch.
* Samples whose class has no ``S_k`` in this experience (old classes replayed by a buffer
  combined with this method) get the task loss only.
* Nothing is kept between experiences: the SAE, ``S`` and ``F_c`` are dropped after each one,
  so the method's ``state_bytes`` is 0 (the cost is compute, not memory).
* The SAE is fitted under a forked RNG and reading rows draws nothing, so with ``lam=0`` a run
  is bit-identical to ``naive`` trained ``epochs + cycles * cycle_epochs`` epochs per experience
  (same loader, same shuffling generator): the extra epochs are plain task epochs, not a no-op.
  Compare with ``lam=0`` (or naive at those epochs) to separate the aux term from the training.

Logs: :attr:`SAECeptionPlugin.fits` has one entry per cycle (experience, cycle, seed, rows,
the SAE's final loss and FVU, ``F_c``'s accuracy on the rows); ``experience_record()`` gives the
runner ``sae_ception_cycles``, ``sae_ception_fvu`` and ``sae_ception_pre_cycle_accuracy`` (lists,
one value per cycle), saved as ``per_experience[i]["method"]``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from clbench.errors import ClbenchError
from clbench.models import default_layer
from clbench.run.fastdata import experience_rows, sample_rows
from clbench.sae.capture import LayerTap, capture, hook_module
from clbench.sae.fit import fit_layer_sae
from clbench.sae.quality import sae_quality
from clbench.sae.topk import SAEBase
from clbench.sae.train import SAE_KINDS
from clbench.strategy_api import BuildContext, cli_defaults, from_params, register_strategy

Aux = Literal["cosine", "mse"]
AUX_KINDS = get_args(Aux)
Sharpen = Literal["top", "random"]
SHARPEN_KINDS = get_args(Sharpen)


@dataclass(frozen=True)
class SAECeptionConfig:
    """SAE-ception's settings (module docstring); each field is the command-line parameter
    ``sae-ception.<field>``, beside ``sae-ception.layer``.

    ``lam``: weight of the aux term; ``aux``: its form; ``top_n``: ``|S_k|``; ``sharpen``:
    ``top`` (the paper's sharpening: each class's ``top_n`` strongest latents) or ``random``
    (the control: ``top_n`` latents per class drawn at random, seeded, so the pull toward an SAE
    reconstruction through ``top_n`` latents stays and only the choice of latents goes); ``sae``,
    ``expansion``, ``k``, ``sae_steps``: the SAE fitted each cycle; ``cycles``: cycles per
    experience, run after its ordinary epochs (0: none, the method is naive);
    ``cycle_epochs``: epochs of ``task + lam * aux`` per cycle; ``max_samples``: rows read per
    fit.
    """

    lam: float = 0.1
    aux: Aux = "cosine"
    top_n: int = 25
    sharpen: Sharpen = "top"
    sae: str = "topk"
    expansion: int = 4
    k: int = 32
    sae_steps: int = 200
    cycles: int = 1
    cycle_epochs: int = 1
    max_samples: int = 4000

    def __post_init__(self) -> None:
        if self.aux not in AUX_KINDS:
            raise ClbenchError(f"sae-ception.aux={self.aux}: choose one of {', '.join(AUX_KINDS)}")
        if self.sae not in SAE_KINDS:
            raise ClbenchError(f"sae-ception.sae={self.sae}: choose one of {', '.join(SAE_KINDS)}")
        if self.sharpen not in SHARPEN_KINDS:
            raise ClbenchError(f"sae-ception.sharpen={self.sharpen}: choose one of "
                               f"{', '.join(SHARPEN_KINDS)}")
        for key in ("top_n", "expansion", "k", "sae_steps", "cycle_epochs", "max_samples"):
            if getattr(self, key) < 1:
                raise ClbenchError(f"sae-ception.{key}={getattr(self, key)}: must be at least 1")
        if self.cycles < 0:
            raise ClbenchError(f"sae-ception.cycles={self.cycles}: must be at least 0")
        if not self.lam >= 0:
            raise ClbenchError(f"sae-ception.lam={self.lam}: must be >= 0")

    @property
    def extra_epochs(self) -> int:
        """Epochs the cycles add to each experience: ``cycles * cycle_epochs``."""
        return self.cycles * self.cycle_epochs


def class_feature_masks(codes: Tensor, y: Tensor, top_n: int, n_classes: int,
                        sharpen: str = "top", seed: int = 0) -> tuple[Tensor, Tensor]:
    """``S_k`` as masks: bool ``[n_classes, m]`` (row ``k``: the ``top_n`` latents with the largest
    mean code over rows of class ``k``; with ``sharpen="random"``, ``top_n`` latents drawn
    uniformly without replacement from a generator seeded by ``seed`` and ``k``) and bool
    ``[n_classes]`` (class ``k`` has rows)."""
    m = codes.shape[1]
    masks = torch.zeros(n_classes, m, dtype=torch.bool)
    has = torch.zeros(n_classes, dtype=torch.bool)
    for c in y.unique().tolist():
        if sharpen == "random":
            g = torch.Generator().manual_seed(seed * 1000 + c)
            top = torch.randperm(m, generator=g)[:min(top_n, m)]
        else:
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


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with gradients off and *without* the forward and
    backward hooks other code put on it (another plugin's :class:`LayerTap` holds the last
    forward's graph, which cannot be deep-copied, and must not fire on the copy's forwards)."""
    saved: list[tuple[nn.Module, str, Any]] = []
    for m in model.modules():
        for name, hooks in list(vars(m).items()):
            if name.startswith(("_forward", "_backward")) and "hooks" in name and hooks:
                saved.append((m, name, hooks))
                setattr(m, name, type(hooks)())
    try:
        return copy.deepcopy(model).eval().requires_grad_(False)
    finally:
        for m, name, hooks in saved:
            setattr(m, name, hooks)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, t: Tensor, batch_size: int = 512) -> float:
    """``mean_i 1[argmax model(x_i) = y_i]`` (:func:`avalanche_forward`, so a multi-head model
    gets its task labels ``t``), in batches on the model's device; 0 for no rows. Draws no
    random numbers when ``model`` is in eval mode."""
    if len(y) == 0:
        return 0.0
    device = next(model.parameters()).device
    hits = 0
    for s in range(0, len(y), batch_size):
        out = avalanche_forward(model, x[s:s + batch_size].to(device), t[s:s + batch_size].to(device))
        hits += int((out.argmax(dim=1).cpu() == y[s:s + batch_size].cpu()).sum())
    return hits / len(y)


class SAECeptionPlugin(SupervisedPlugin):
    """Runs ``cycles`` SAE-ception cycles after each experience's ordinary epochs, adding
    ``lam * aux`` (see the module docstring) to the loss of every mini-batch of the cycle epochs.

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
        self.masks: Tensor | None = None   # [n_classes, m] bool: S_k
        self.has: Tensor | None = None     # [n_classes] bool: S_k exists
        self.tap: LayerTap | None = None
        #: per cycle: experience, cycle, seed, rows, final_loss, fvu, accuracy (of F_c on the rows)
        self.fits: list[dict[str, Any]] = []
        self._epoch = 0                    # epochs begun in the current experience
        self._epochs: int | None = None    # the strategy's own train_epochs, while raised
        self._exp_fits: list[dict[str, Any]] = []   # this experience's entries of fits

    def fit(self, model: nn.Module, x: Tensor, y: Tensor, seed: int) -> dict[str, Any]:
        """Freeze a copy of ``model``, train a fresh SAE on its activations of (a sample of at
        most ``max_samples`` rows of) ``x``, and set ``S_k`` from labels ``y`` (classes
        ``0 .. max(y)``); returns the SAE's training statistics plus ``fvu``, its fraction of
        variance unexplained on those activations (:func:`clbench.sae.quality.sae_quality`)."""
        c = self.config
        self.frozen = frozen_copy(model)
        if len(x) > c.max_samples:
            rows = sample_rows(len(x), c.max_samples, seed)
            x, y = x[rows], y[rows]
        fitted = fit_layer_sae(self.frozen, self.layer, x, kind=c.sae, expansion=c.expansion,
                               k=c.k, steps=c.sae_steps, seed=seed)
        with torch.no_grad():
            codes = fitted.sae.encode(fitted.acts)
        n_classes = int(y.max()) + 1 if len(y) else 0
        masks, has = class_feature_masks(codes, y.to(codes.device), c.top_n, n_classes,
                                         c.sharpen, seed)
        fvu = sae_quality(fitted.sae, fitted.acts)["fvu"]
        device = next(model.parameters()).device   # the SAE ran where x lives; train where the model is
        self.sae, self.masks, self.has = fitted.sae.to(device), masks.to(device), has.to(device)
        return {**fitted.stats, "fvu": fvu}

    def aux_term(self, h: Tensor, x: Tensor, y: Tensor) -> Tensor | None:
        """The auxiliary loss for a mini-batch: ``h [B, d]`` the live hooked activation (with
        graph), ``x`` its inputs, ``y`` its labels; None when no sample's class has an ``S_k``."""
        if self.sae is None or self.masks is None or self.has is None or self.frozen is None:
            raise RuntimeError("SAECeptionPlugin.aux_term called before fit")
        n = len(self.has)   # labels >= n (classes the fit's rows did not have) get no S_k
        valid = (y < n) & self.has[y.clamp(max=n - 1)]
        if not bool(valid.any()):
            return None
        t = sharpened_targets(self.sae, capture(self.frozen, self.layer, x[valid]), y[valid],
                              self.masks)
        return aux_loss(h[valid], t.to(h.dtype), self.config.aux)

    def start_cycle(self, strategy: Any, cycle: int) -> None:
        """Cycle ``cycle`` of the current experience: freeze ``F_c`` (the model as trained so
        far), log its accuracy on the rows, fit the SAE and ``S``, and hook the live layer."""
        if self.tap is not None:   # the previous cycle's hook; the next one is installed below
            self.tap.remove()
            self.tap = None
        e = strategy.experience.current_experience
        seed = self.seed * 10_000 + 100 * e + cycle
        rows = sample_rows(len(strategy.experience.dataset), self.config.max_samples, seed)
        x, y, t = experience_rows(strategy, rows)
        stats = self.fit(strategy.model, x, y, seed=seed)
        assert self.frozen is not None
        entry = {"experience": e, "cycle": cycle, "seed": seed, "rows": len(rows),
                 "final_loss": stats["final_loss"], "fvu": stats["fvu"],
                 "accuracy": accuracy(self.frozen, x, y, t)}
        self.fits.append(entry)
        self._exp_fits.append(entry)
        self.tap = LayerTap(strategy.model, self.layer)

    def experience_record(self) -> dict[str, Any]:
        """What the runner saves as ``per_experience[i]["method"]`` for the experience just
        trained (:func:`clbench.run.runner.method_record`): cycles run, each cycle's SAE FVU and
        ``F_c``'s accuracy on the experience's rows before the cycle."""
        return {"sae_ception_cycles": len(self._exp_fits),
                "sae_ception_fvu": [f["fvu"] for f in self._exp_fits],
                "sae_ception_pre_cycle_accuracy": [f["accuracy"] for f in self._exp_fits]}

    # ------------------------------------------------------------- Avalanche hooks

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self._epochs is not None:   # an experience that ended in an exception: undo its raise
            strategy.train_epochs = self._epochs
        self._epochs = strategy.train_epochs
        strategy.train_epochs = self._epochs + self.config.extra_epochs   # the cycle epochs
        self._epoch, self._exp_fits = 0, []

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        assert self._epochs is not None
        into = self._epoch - self._epochs          # epochs into the cycles (< 0: ordinary)
        if into >= 0 and into % self.config.cycle_epochs == 0:
            self.start_cycle(strategy, into // self.config.cycle_epochs)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.tap is None:   # an ordinary epoch: the task loss only
            return
        h = self.tap.out
        if h is None or h.shape[0] != len(strategy.mb_y):
            raise RuntimeError("sae-ception: the hooked activation does not match the mini-batch")
        term = self.aux_term(h, strategy.mb_x, strategy.mb_y)
        if term is not None:
            strategy.loss = strategy.loss + self.config.lam * term

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self._epochs is not None:
            strategy.train_epochs, self._epochs = self._epochs, None
        if self.tap is not None:
            self.tap.remove()
        self.tap = self.frozen = self.sae = self.masks = self.has = None


def _check(p: dict[str, Any]) -> None:
    """Validate resolved ``sae-ception.*`` parameters by building the config."""
    from_params(SAECeptionConfig, p)


@register_strategy(
    "sae-ception", check=_check, defaults={"layer": "", **cli_defaults(SAECeptionConfig)},
    description="SAE-ception: after each experience's training, cycles that pull a layer toward "
                "class-sharpened SAE reconstructions (NeurIPS 2025 MechInterp Workshop)")
def sae_ception(p: dict[str, Any], ctx: BuildContext) -> SAECeptionPlugin:
    config = from_params(SAECeptionConfig, p)
    if ctx.stream.y_train.dim() > 1:
        raise ClbenchError(f"sae-ception sharpens per class and stream {ctx.stream.name!r} has no "
                           "class labels (its targets are answer tokens); run it on a "
                           "classification stream")
    layer = p["layer"] or default_layer(ctx.model)
    hook_module(ctx.model, layer)  # an unknown layer fails here, with the known names
    return SAECeptionPlugin(layer, config, seed=ctx.seed)
