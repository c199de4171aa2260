"""SAE-ception: sharpen a layer's features with targets decoded from a fresh sparse autoencoder.

    clbench run --stream split-digits --strategy sae-ception,sae-ception+replay --seeds 0,1,2
    clbench run --stream split-digits --strategy sae-ception --set sae-ception.cycles=3 \
                --set sae-ception.cycle_epochs=3
    clbench run --stream text-v1 --strategy naive,sae-ception --set sae-ception.lam=0.1 --seeds 0

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

**Language models** (text streams; the text family's defaults, :data:`TEXT_DEFAULTS`), as
SAE-ception 2.0 applies the method to GPT-2 (METHODS.md, section 2): the hooked layer is the final
block of the trained part (``sae-ception.layer=""``: ``block{n_layers - 1}``, ``block29`` for
SmolLM2; a frozen-prefix block is refused), TopK SAE ``8x`` with ``k = 50``, ``top_frac=0.01``
(``|S_k| = ceil(0.01 m)``, 47 of SmolLM2's 4,608 latents; ``--set sae-ception.top_frac=0`` gives
v1's ``top_n = 25``), ``lam = 0.01``. A packed row's activation (``pool="prompt_end"``) is the
block's output at the prompt's last token, the position the answer's first token is predicted
from (:func:`clbench.sae.capture.prompt_end`)::

    h_i = block_L(x_i)[p_i]      p_i = min {t : predict_mask_it = 1}

It is a real token (2.0's "final token" is mostly a PAD position, a defect not copied) and it
has not seen the answer; the mean over every real token (``pool="layer"``) would include the
answer's own tokens, i.e. the label. ``h_i`` is indexed from the live block output, so the aux
term's gradient reaches every trained block at and below the hook (the frozen prefix comes from
the :class:`~clbench.models.lm.PrefixCache` and has no graph, which is right: it does not train).
A row's class is the label of its classification task (``supersense``: 8 labels,
``fortune-topic``: 6; ids 0..13 over the stream), found from its answer tokens
(:class:`clbench.data.text_classes.RowClasses`); the other tasks (translations, definitions:
per-example choices, no fixed label set) get **no aux term**: their cycle epochs are plain task
epochs, no SAE is fitted, the record says ``sae_ception_aux: "off: no class labels"`` and the
log says so once per experience. The pre-cycle accuracy of a text row is teacher-forced exact
match of its answer tokens.

**The random-target control** (``sharpen=random``): the same cycles, SAE, codes, ``|S_k|``,
``lam`` and cosine pull, but each class's ``S_k`` drawn uniformly at random (seeded by the cycle's
seed and the class) instead of the class's strongest latents. It isolates the *sharpening*, the
one step the method claims makes features monosemantic: a random *dictionary* would change the
reconstruction and the latent choice at once. With a TopK code many rows have no active latent
in a random ``S_k``: their target is the decoder bias alone, a pull toward the mean activation;
``sae_ception_empty_targets`` records that fraction per cycle (near 0 for ``top``), so a reader
sees how much of the control is that pull.

Logs: :attr:`SAECeptionPlugin.fits` has one entry per cycle (experience, cycle, seed, rows,
the SAE's final loss and FVU, ``F_c``'s accuracy on the rows); ``experience_record()`` gives the
runner ``sae_ception_layer``, ``sae_ception_pool``, ``sae_ception_cycles``, ``sae_ception_aux``
(``on``, or why not) and, one value per cycle, ``sae_ception_kept`` (``|S_k|``),
``sae_ception_fvu``, ``sae_ception_empty_targets``, ``sae_ception_pre_cycle_accuracy``, the aux
term's mean over the cycle's steps (``sae_ception_aux_term``, before ``lam``) and ``lam`` times it
as a share of the mean task loss (``sae_ception_lam_aux_share``: how much the pull weighs), saved
as ``per_experience[i]["method"]``.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, get_args

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from clbench.errors import ClbenchError
from clbench.models import default_layer
from clbench.run.fastdata import experience_rows, sample_rows
from clbench.sae.capture import LayerTap, at_prompt_end, capture, capture_prompt_end, hook_module
from clbench.sae.fit import fit_sae
from clbench.sae.quality import sae_quality
from clbench.sae.topk import SAEBase
from clbench.sae.train import SAE_KINDS
from clbench.strategy_api import BuildContext, cli_defaults, from_params, register_strategy

Aux = Literal["cosine", "mse"]
AUX_KINDS = get_args(Aux)
Sharpen = Literal["top", "random"]
SHARPEN_KINDS = get_args(Sharpen)
Pool = Literal["layer", "prompt_end"]
POOLS = get_args(Pool)
#: ``(x, y) -> [B]`` long class ids of a mini-batch's rows, ``-1`` for a row without a class
ClassesOf = Callable[[Tensor, Tensor], Tensor]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAECeptionConfig:
    """SAE-ception's settings (module docstring); each field is the command-line parameter
    ``sae-ception.<field>``, beside ``sae-ception.layer``.

    ``lam``: weight of the aux term; ``aux``: its form; ``top_n``: ``|S_k|`` (v1's N = 25);
    ``top_frac``: when > 0, ``|S_k| = ceil(top_frac * m)`` of the SAE's ``m`` latents instead
    (2.0's top 1%: ``top_frac=0.01``); ``pool``: the activation ``h_i`` of a row, ``layer`` (the
    model's own pooling of the layer: the MLP unit vector, the ViT's CLS token, the LM's mean over
    real tokens) or ``prompt_end`` (packed text rows: the token state at the prompt's last token,
    :func:`clbench.sae.capture.prompt_end`); ``sharpen``:
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
    top_frac: float = 0.0
    pool: Pool = "layer"
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
        if self.pool not in POOLS:
            raise ClbenchError(f"sae-ception.pool={self.pool}: choose one of {', '.join(POOLS)}")
        if not 0.0 <= self.top_frac <= 1.0:
            raise ClbenchError(f"sae-ception.top_frac={self.top_frac}: must be in [0, 1]")
        if self.cycles < 0:
            raise ClbenchError(f"sae-ception.cycles={self.cycles}: must be at least 0")
        if not self.lam >= 0:
            raise ClbenchError(f"sae-ception.lam={self.lam}: must be >= 0")

    def kept(self, m: int) -> int:
        """``|S_k|`` for an SAE of ``m`` latents: ``ceil(top_frac * m)`` (at least 1) when
        ``top_frac > 0``, else ``min(top_n, m)``."""
        if self.top_frac > 0:
            return max(1, min(m, math.ceil(self.top_frac * m - 1e-9)))
        return min(self.top_n, m)

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
    gets its task labels ``t``), in batches on the model's device; 0 for no rows. For packed
    text rows (``y [N, A]`` answer ids, ``-100`` after them) a row is a hit when the argmax at
    every answer slot is the answer's token (teacher-forced exact match). Draws no random
    numbers when ``model`` is in eval mode."""
    if len(y) == 0:
        return 0.0
    device = next(model.parameters()).device
    hits = 0
    for s in range(0, len(y), batch_size):
        out = avalanche_forward(model, x[s:s + batch_size].to(device), t[s:s + batch_size].to(device))
        pred, gold = out.argmax(dim=1).cpu(), y[s:s + batch_size].cpu()
        if gold.dim() > 1:   # answer tokens [B, A]: every real slot right
            hits += int(((pred == gold) | (gold == -100)).all(dim=1).sum())
        else:
            hits += int((pred == gold).sum())
    return hits / len(y)


class SAECeptionPlugin(SupervisedPlugin):
    """Runs ``cycles`` SAE-ception cycles after each experience's ordinary epochs, adding
    ``lam * aux`` (see the module docstring) to the loss of every mini-batch of the cycle epochs.

    A plain Avalanche plugin: ``SAECeptionPlugin("fc1", SAECeptionConfig(lam=0.1), seed=0)``."""

    def __init__(self, layer: str, config: SAECeptionConfig | None = None, *, seed: int = 0,
                 classes: ClassesOf | None = None, **overrides: Any) -> None:
        """``layer``: the hooked layer; ``config``: the settings (default
        :class:`SAECeptionConfig`), with ``overrides`` (its field names) replacing some of them;
        ``seed``: rows and SAE training (cycle ``c`` of experience ``e`` uses
        ``10000 * seed + 100 * e + c``); ``classes``: a row's class from its ``(x, y)`` (default:
        the label ``y`` itself; text runs: :meth:`clbench.data.text_classes.RowClasses.lookup`),
        ``-1`` for a row without one: such rows get the task loss only, and an experience with
        no class at all gets no SAE and no aux term (its cycle epochs are plain task epochs)."""
        super().__init__()
        self.layer, self.seed = layer, seed
        self.classes_of: ClassesOf = classes or (lambda _x, y: y)
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

    def read(self, model: nn.Module, x: Tensor) -> Tensor:
        """``[N, d]``: the hooked layer's activation ``h`` of rows ``x`` as ``pool`` defines it
        (eval mode, no graph)."""
        if self.config.pool == "prompt_end":
            return capture_prompt_end(model, self.layer, x)
        return capture(model, self.layer, x)

    def live(self, x: Tensor) -> Tensor:
        """``[B, d]``: the live hooked activation of the latest forward, with its graph."""
        assert self.tap is not None
        h = self.tap.out
        if h is None:
            raise RuntimeError("sae-ception: the hooked layer did not run in this forward")
        return at_prompt_end(h, x) if self.config.pool == "prompt_end" else h

    def fit(self, model: nn.Module, x: Tensor, y: Tensor, seed: int) -> dict[str, Any] | None:
        """Freeze a copy of ``model``, train a fresh SAE on its activations of the rows of ``x``
        that have a class (at most ``max_samples`` of them, seeded), and set ``S_k`` from their
        classes (``classes(x, y)``; ids ``0 .. max``); returns the SAE's training statistics plus
        ``fvu``, its fraction of variance unexplained on those activations
        (:func:`clbench.sae.quality.sae_quality`), and ``empty_targets``, the fraction of those
        rows whose sharpened code is all zero (their target is the decoder bias alone). None,
        and nothing fitted, when no row has a class."""
        c = self.config
        cls = self.classes_of(x, y).cpu()
        keep = (cls >= 0).nonzero().squeeze(1)
        if len(keep) == 0:
            return None
        x, cls = x[keep], cls[keep]
        if len(x) > c.max_samples:
            rows = sample_rows(len(x), c.max_samples, seed)
            x, cls = x[rows], cls[rows]
        self.frozen = frozen_copy(model)
        fitted = fit_sae(self.read(self.frozen, x), kind=c.sae, expansion=c.expansion, k=c.k,
                         steps=c.sae_steps, seed=seed)
        with torch.no_grad():
            codes = fitted.sae.encode(fitted.acts)
        cls = cls.to(codes.device)
        masks, has = class_feature_masks(codes, cls, c.kept(codes.shape[1]), int(cls.max()) + 1,
                                         c.sharpen, seed)
        empty = float(((codes * masks[cls]) == 0).all(dim=1).float().mean())
        fvu = sae_quality(fitted.sae, fitted.acts)["fvu"]
        device = next(model.parameters()).device   # the SAE ran where x lives; train where the model is
        self.sae, self.masks, self.has = fitted.sae.to(device), masks.to(device), has.to(device)
        return {**fitted.stats, "fvu": fvu, "empty_targets": empty, "rows": len(x),
                "kept": int(masks[has].sum(dim=1)[0]) if bool(has.any()) else 0}

    def aux_term(self, h: Tensor, x: Tensor, y: Tensor) -> Tensor | None:
        """The auxiliary loss for a mini-batch: ``h [B, d]`` the live hooked activation (with
        graph), ``x`` its inputs, ``y`` its labels (a row's class is ``classes(x, y)``); None
        when no row's class has an ``S_k``."""
        if self.sae is None or self.masks is None or self.has is None or self.frozen is None:
            raise RuntimeError("SAECeptionPlugin.aux_term called before fit")
        cls = self.classes_of(x, y).to(self.has.device)
        n = len(self.has)   # ids >= n (classes the fit's rows did not have) or -1 get no S_k
        valid = (cls >= 0) & (cls < n) & self.has[cls.clamp(min=0, max=n - 1)]
        if not bool(valid.any()):
            return None
        v = valid.to(h.device)
        t = sharpened_targets(self.sae, self.read(self.frozen, x[v.to(x.device)]).to(h.device),
                              cls[valid].to(h.device), self.masks)
        return aux_loss(h[v], t.to(h.dtype), self.config.aux)

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
        if stats is None:   # no row of this experience has a class: plain task epochs
            if cycle == 0:
                log.info("sae-ception: experience %d has no class labels (a task without a fixed "
                         "label set): no SAE, no aux term in its cycle epochs", e)
            self.fits.append({"experience": e, "cycle": cycle, "seed": seed, "rows": 0,
                              "skipped": "no class labels"})
            return
        assert self.frozen is not None
        cls = self.classes_of(x, y).cpu()
        has = cls >= 0
        entry = {"experience": e, "cycle": cycle, "seed": seed, "rows": stats["rows"],
                 "final_loss": stats["final_loss"], "fvu": stats["fvu"],
                 "empty_targets": stats["empty_targets"], "kept": stats["kept"],
                 "accuracy": accuracy(self.frozen, x[has], y[has], t[has])}
        self.fits.append(entry)
        self._exp_fits.append(entry)
        self.tap = LayerTap(strategy.model, self.layer, raw=self.config.pool == "prompt_end")

    def experience_record(self) -> dict[str, Any]:
        """What the runner saves as ``per_experience[i]["method"]`` for the experience just
        trained (:func:`clbench.run.runner.method_record`): cycles run, each cycle's SAE FVU and
        ``F_c``'s accuracy on the experience's rows before the cycle."""
        return {"sae_ception_layer": self.layer, "sae_ception_pool": self.config.pool,
                "sae_ception_cycles": len(self._exp_fits),
                "sae_ception_aux": "on" if self._exp_fits or not self.config.cycles
                else "off: no class labels",
                "sae_ception_kept": [f["kept"] for f in self._exp_fits],
                "sae_ception_fvu": [f["fvu"] for f in self._exp_fits],
                "sae_ception_empty_targets": [f["empty_targets"] for f in self._exp_fits],
                "sae_ception_pre_cycle_accuracy": [f["accuracy"] for f in self._exp_fits],
                "sae_ception_aux_term": [f["aux_sum"] / f["steps"] if f.get("steps") else None
                                         for f in self._exp_fits],
                "sae_ception_lam_aux_share": [
                    self.config.lam * f["aux_sum"] / max(f["task_sum"], 1e-30)
                    if f.get("steps") else None for f in self._exp_fits]}

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
        h = self.live(strategy.mb_x)
        if h.shape[0] != len(strategy.mb_y):
            raise RuntimeError("sae-ception: the hooked activation does not match the mini-batch")
        term = self.aux_term(h, strategy.mb_x, strategy.mb_y)
        if term is not None:
            if self._exp_fits:   # the cycle's running sums (experience_record's means)
                cur = self._exp_fits[-1]
                cur["task_sum"] = cur.get("task_sum", 0.0) + float(strategy.loss.detach())
                cur["aux_sum"] = cur.get("aux_sum", 0.0) + float(term.detach())
                cur["steps"] = cur.get("steps", 0) + 1
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


def _text_layer(model: nn.Module, layer: str) -> str:
    """The hooked block of a language model: ``layer``, or its final block when empty (2.0's
    "last block"); a block of the frozen prefix cannot move and is refused."""
    n_layers, start = int(getattr(model, "n_layers")), int(getattr(model, "train_start", 0))
    layer = layer or f"block{n_layers - 1}"
    if getattr(model, "prefix_frozen", False) and layer.startswith("block") \
            and layer.removeprefix("block").isdigit() and int(layer.removeprefix("block")) < start:
        raise ClbenchError(f"sae-ception.layer={layer}: that block is in the frozen prefix (blocks "
                           f"below block{start} do not train), so the aux term cannot move it; "
                           f"choose block{start} or above")
    return layer


#: text family: SAE-ception 2.0's GPT-2 set-up (TopK 8x, k 50, the top 1% of latents per class,
#: lambda 0.01) on the state the answer is read from (the prompt's last token, never padding)
TEXT_DEFAULTS: dict[str, Any] = {"pool": "prompt_end", "expansion": 8, "k": 50,
                                 "top_frac": 0.01, "lam": 0.01}


@register_strategy(
    "sae-ception", check=_check, defaults={"layer": "", **cli_defaults(SAECeptionConfig)},
    family_defaults={"text": TEXT_DEFAULTS},
    description="SAE-ception: after each experience's training, cycles that pull a layer toward "
                "class-sharpened SAE reconstructions (NeurIPS 2025 MechInterp Workshop)")
def sae_ception(p: dict[str, Any], ctx: BuildContext) -> SAECeptionPlugin:
    config = from_params(SAECeptionConfig, p)
    classes: ClassesOf | None = None
    if ctx.stream.y_train.dim() > 1:   # packed text rows: classes from the answers
        ts = ctx.extras.get("text_stream")
        if ts is None:
            raise ClbenchError(f"sae-ception sharpens per class and stream {ctx.stream.name!r} has "
                               "no class labels (its targets are answer tokens) and no text "
                               "tasks to read them from; run it on a classification or text stream")
        from clbench.data.text_classes import RowClasses

        row_classes = RowClasses.of(ts)
        classes = lambda x, _y: row_classes.lookup(x)  # noqa: E731
        layer = _text_layer(ctx.model, p["layer"])
    else:
        if config.pool == "prompt_end":
            raise ClbenchError("sae-ception.pool=prompt_end reads packed text rows; this stream "
                               "has none: use sae-ception.pool=layer")
        layer = p["layer"] or default_layer(ctx.model)
    hook_module(ctx.model, layer)  # an unknown layer fails here, with the known names
    return SAECeptionPlugin(layer, config, seed=ctx.seed, classes=classes)
