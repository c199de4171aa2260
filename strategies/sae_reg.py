"""SAE-guided activation regularization: protect the SAE features old tasks relied on.

    clbench run --stream split-fmnist --strategy sae-reg,sae-reg+replay,ewc --seeds 0,1,2
    clbench run --stream split-fmnist --strategy sae-reg --set sae-reg.q=0.5 --set sae-reg.rho=two-sided

The method of Ning, Xue, Lou and Guo, "From Weights to Features: SAE-Guided Activation
Regularization for LLM Continual Learning" (arXiv 2606.26629, 2026). Its exact equations are not
public; this module implements the formulation below, which keeps every property the paper
states (a fixed SAE as the feature dictionary; a compact feature mask built from current-task
data; a stability and a plasticity term; no old data, stored activations or replay buffer; EWC
as the weight-space special case). ``tests/strategies/test_sae_reg.py`` proves those properties.

**Features.** ``h(x; theta)`` is the pooled output ``[d]`` of the hooked layer ``L``; the frozen
SAE (``W_enc, b_enc, W_dec, b_pre``) gives each input the *feature activations*

    f(x; theta) = ReLU(W_enc (h(x; theta) - b_pre) + b_enc)                  [m]

i.e. the SAE's latents before TopK competition (for a ReLU+L1 SAE they are its codes). TopK is a
device for sparse reconstruction; a protected feature pushed out of the top k by a new one must
still feel a gradient pulling it back, so the penalty reads the ReLU'd pre-activations.

**Importance** (end of experience t, current data only, model in eval mode). With the SAE spliced
in at ``L`` as ``h~ = W_dec^T z + (h - W_dec^T z)`` (the error term held fixed, so the forward is
unchanged), the gradient of sample n's loss ``l_n`` with respect to latent i is
``g_ni = <W_dec[i], dl_n/dh_n>``. Then, over the experience's (at most ``max_samples``) rows,

    Omega_i = mean_n g_ni^2                    (importance="fisher": a feature-space empirical Fisher)
    Omega_i = mean_n f_ni |g_ni|               (importance="attribution")

**Mask.** ``M_t`` is the smallest set of latents holding a fraction ``q`` of the importance mass
``sum_i Omega_i`` (or the ``top_m`` largest when ``top_m > 0``). Weights on ``M_t`` are
``w_i = Omega_i / sum_{j in M_t} Omega_j`` (``normalize=true``: each experience's weights sum
to 1, so ``protect`` is a weighted mean and ``lam`` has one meaning whatever the loss scale and
mask size) or ``Omega_i``. Across experiences ``M = union_t M_t`` and the weights
add. ``(M, w)`` is all the method keeps between experiences, besides the SAE.

**Loss** on experience t > 0, mini-batch B of current data only, with ``theta*`` the weights at the
start of the experience (a frozen copy held during the experience, dropped after it)::

    loss = task + lam * protect + guide_lam * guide
    protect = sum_{i in M} w_i mean_{x in B} rho(f_i(x; theta*) - f_i(x; theta))
        rho(u) = max(u, 0)^2   (rho="one-sided": only a loss of activation is penalised)
        rho(u) = u^2           (rho="two-sided")
    guide = CE(y, g(h - sum_{i in M} z_i W_dec[i]))                  (guide="ablate")
    guide = sum_{i in M} w_i mean_{x in B} max(f_i(x; theta) - f_i(x; theta*), 0)^2   (guide="recruit")

``protect`` is the quadratic penalty of the constraint "the protected features keep their
activation" (a Lagrangian relaxation, with the importance as the multiplier's scale). ``guide``
is the plasticity term: ``ablate`` asks the network above ``L`` (``g``) to solve the new task with
the protected features' SAE contributions removed from ``h`` (``z`` the SAE codes), so new-task
evidence goes into the unmasked part of the dictionary; ``recruit`` penalises new-task inputs that
newly recruit a protected feature (the option ``METHODS.md`` suggests). ``ablate`` costs one more
forward and backward per step.

**EWC as a special case.** Take as "dictionary" the identity over the parameters, ``f(x; theta)
= theta`` (:class:`ParamFeatures`), the full mask (``q = 1``), ``Omega`` the diagonal Fisher,
``normalize=false``, no guide and ``rho`` two-sided (a weight has no "loss of activation"; the
paper's "one-sided weight-space penalty" we read as the stability term alone). Then ``protect
= sum_i F_i (theta*_i - theta_i)^2``, which is Avalanche's EWC penalty for the second experience
(and Online EWC's with ``decay_factor=1`` for every experience, since both add the Fisher
diagonals and anchor at the latest weights); the test checks this to 1e-6.

**The SAE** is trained once, on the hooked layer's activations of the first experience's data at
its end (TopK by default; ``sae=relu_l1`` optional; :func:`clbench.sae.fit.fit_layer_sae`), or
loaded from ``sae_path`` (a file written by ``SAEBase.save``); it is frozen from then on.

**In any Avalanche script**: ``Naive(model, opt, criterion, plugins=[SAERegPlugin("fc2",
SAERegConfig(lam=1.0), seed=0)])``. "Current data" is ``strategy.experience.dataset`` (at most
``max_samples`` seeded rows, :func:`clbench.run.fastdata.experience_rows`); ``l_n`` and the ``ablate``
guide's ``CE`` are ``SAERegConfig.criterion`` (default ``torch.nn.functional.cross_entropy``, a
mean-reduced ``criterion(logits, y)``). ``layer`` is a key of a clbench model's ``hook_layers``
or, for any other ``nn.Module``, a ``named_modules()`` path with ``[B, d]`` output.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from clbench.errors import ClbenchError
from clbench.models import default_layer
from clbench.run.fastdata import experience_rows, sample_rows
from clbench.sae.capture import LayerTap, capture, hook_module, layer_pool
from clbench.sae.fit import fit_layer_sae
from clbench.sae.relu_l1 import ReLUL1SAE
from clbench.sae.topk import SAEBase, TopKSAE
from clbench.sae.train import SAE_KINDS
from clbench.strategy_api import BuildContext, cli_defaults, from_params, register_strategy

Rho = Literal["one-sided", "two-sided"]
Importance = Literal["fisher", "attribution"]
Guide = Literal["ablate", "recruit"]
RHOS, IMPORTANCES, GUIDES = get_args(Rho), get_args(Importance), get_args(Guide)
#: ``criterion(logits [B, C], y [B]) -> mean loss``
Criterion = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------ settings

@dataclass(frozen=True)
class SAERegConfig:
    """sae-reg's settings (module docstring); each field but ``criterion`` is the command-line
    parameter ``sae-reg.<field>``, beside ``sae-reg.layer``.

    ``lam``, ``guide_lam``: weights of protect and guide; ``rho``, ``importance``, ``guide``:
    their forms; ``q`` / ``top_m``: the mask rule; ``normalize``: weights sum to 1 per
    experience; ``sae``, ``expansion``, ``k``, ``sae_steps``: the SAE trained after experience 1
    (unless ``sae_path`` names a saved one); ``max_samples``: rows read per experience;
    ``criterion``: the per-batch loss ``l`` of the importance and of the ablate guide.
    """

    lam: float = 10.0
    guide: Guide = "ablate"
    guide_lam: float = 0.1
    rho: Rho = "one-sided"
    importance: Importance = "fisher"
    q: float = 0.9
    top_m: int = 0
    normalize: bool = True
    sae: str = "topk"
    expansion: int = 2
    k: int = 16
    sae_steps: int = 200
    sae_path: str = ""
    max_samples: int = 2000
    criterion: Criterion = field(default=F.cross_entropy, metadata={"cli": False})

    def __post_init__(self) -> None:
        choices = {"rho": RHOS, "importance": IMPORTANCES, "guide": GUIDES, "sae": SAE_KINDS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ClbenchError(f"sae-reg.{key}={getattr(self, key)}: choose one of "
                                   f"{', '.join(allowed)}")
        if not 0 < self.q <= 1:
            raise ClbenchError(f"sae-reg.q={self.q}: must be in (0, 1]")
        for key in ("expansion", "k", "sae_steps", "max_samples"):
            if getattr(self, key) < 1:
                raise ClbenchError(f"sae-reg.{key}={getattr(self, key)}: must be at least 1")
        if self.top_m < 0:
            raise ClbenchError(f"sae-reg.top_m={self.top_m}: must be >= 0 (0: use q)")
        for key in ("lam", "guide_lam"):
            if not getattr(self, key) >= 0:
                raise ClbenchError(f"sae-reg.{key}={getattr(self, key)}: must be >= 0")
        if not callable(self.criterion):
            raise ClbenchError(f"SAERegConfig.criterion={self.criterion!r}: must be a loss "
                               f"function criterion(logits, y), e.g. F.cross_entropy")


# ------------------------------------------------------------------ pure functions

def importance(f: Tensor, g: Tensor, kind: str) -> Tensor:
    """``Omega [m]`` from feature values ``f [N, m]`` and per-sample loss gradients ``g [N, m]``:
    ``mean_n g^2`` (fisher) or ``mean_n f |g|`` (attribution)."""
    if kind == "fisher":
        return g.pow(2).mean(dim=0)
    if kind == "attribution":
        return (f * g.abs()).mean(dim=0)
    raise ClbenchError(f"sae-reg.importance={kind}: choose one of {', '.join(IMPORTANCES)}")


def select_mask(omega: Tensor, q: float, top_m: int = 0) -> Tensor:
    """Indices of the mask: the fewest latents whose ``omega`` sums to at least ``q`` of the total
    (``top_m == 0``), or the ``top_m`` largest; latents with ``omega == 0`` are never chosen."""
    order = omega.argsort(descending=True)
    positive = int((omega > 0).sum())
    if top_m > 0:
        return order[:min(top_m, positive)].sort().values
    if positive == 0:
        return order[:0]
    mass = omega[order].cumsum(0)
    n = int((mass < q * mass[-1] * (1 - 1e-12)).sum()) + 1
    return order[:min(n, positive)].sort().values


def merge_mask(idx: Tensor, w: Tensor, new_idx: Tensor, new_w: Tensor) -> tuple[Tensor, Tensor]:
    """Union of two weighted masks; weights of a latent in both add."""
    both = torch.cat([idx, new_idx])
    uniq, inv = both.unique(return_inverse=True)
    weights = torch.zeros(len(uniq), dtype=new_w.dtype, device=new_w.device)
    weights.index_add_(0, inv, torch.cat([w.to(new_w), new_w]))
    return uniq, weights


def protect_term(f: Tensor, f_ref: Tensor, idx: Tensor, w: Tensor, rho: str) -> Tensor:
    """``sum_j w_j mean_n rho(f_ref[n, idx_j] - f[n, idx_j])``; ``f``, ``f_ref``: ``[N, m]``."""
    u = f_ref[:, idx] - f[:, idx]
    pen = u.clamp_min(0).pow(2) if rho == "one-sided" else u.pow(2)
    return (w * pen.mean(dim=0)).sum()


def recruit_term(f: Tensor, f_ref: Tensor, idx: Tensor, w: Tensor) -> Tensor:
    """``sum_j w_j mean_n max(f[n, idx_j] - f_ref[n, idx_j], 0)^2``."""
    return (w * (f[:, idx] - f_ref[:, idx]).clamp_min(0).pow(2).mean(dim=0)).sum()


def _shift(out: Tensor, delta: Tensor) -> Tensor:
    """Subtract ``delta [B, D]`` from a layer's raw output so its pooled value moves by exactly
    ``-delta``: ``[B, D]`` directly, tokens ``[B, T, D]`` and maps ``[B, D, H, W]`` at every
    position (the CLS token and the spatial mean then move by ``delta``)."""
    if out.dim() == 2:
        return out - delta
    if out.dim() == 3:
        return out - delta[:, None, :]
    if out.dim() == 4:
        return out - delta[:, :, None, None]
    raise ClbenchError(f"sae-reg guide=ablate cannot edit a layer output of shape {tuple(out.shape)}")


# ------------------------------------------------------------------ feature maps

class FeatureMap(Protocol):
    """What the plugin needs of a dictionary: live and reference features and their gradients."""

    def attach(self, model: nn.Module) -> None: ...
    def detach(self) -> None: ...
    def live(self, model: nn.Module) -> Tensor: ...
    def reference(self, x: Tensor) -> Tensor: ...
    def values_and_grads(self, model: nn.Module, criterion: Any, x: Tensor, y: Tensor,
                         t: Tensor) -> tuple[Tensor, Tensor]: ...


class SAEFeatures:
    """``f(x; theta) = ReLU(pre(h_L(x; theta)))`` for a frozen SAE at layer ``layer``."""

    def __init__(self, layer: str, sae: SAEBase) -> None:
        self.layer, self.sae = layer, sae.eval().requires_grad_(False)
        self.tap: LayerTap | None = None
        self.frozen: nn.Module | None = None

    def codes(self, h: Tensor) -> Tensor:
        return F.relu(self.sae.pre_activations(h))

    def attach(self, model: nn.Module) -> None:
        """Freeze ``theta*`` (a copy of ``model``) and tap ``model``'s layer for live features."""
        self.detach()
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)
        self.tap = LayerTap(model, self.layer)

    def detach(self) -> None:
        if self.tap is not None:
            self.tap.remove()
        self.tap = self.frozen = None

    def live(self, model: nn.Module) -> Tensor:
        """Features of the latest forward pass of ``model``, with its graph: ``[B, m]``."""
        if self.tap is None or self.tap.out is None:
            raise RuntimeError("sae-reg: no tapped activation; attach() before the forward pass")
        return self.codes(self.tap.out)

    @torch.no_grad()
    def reference(self, x: Tensor) -> Tensor:
        if self.frozen is None:
            raise RuntimeError("sae-reg: no frozen reference model; attach() first")
        return self.codes(capture(self.frozen, self.layer, x))

    def values_and_grads(self, model: nn.Module, criterion: Any, x: Tensor, y: Tensor,
                         t: Tensor) -> tuple[Tensor, Tensor]:
        """``f [N, m]`` and ``g_ni = <W_dec[i], dl_n/dh_n> [N, m]`` (SAE spliced in at ``L``).

        ``dl_n/dh_n`` is the gradient with respect to a shift ``delta_n`` added to the layer's
        raw output so that its pooled value moves by ``delta_n`` (every token or position moves,
        as in :func:`_shift`): for an unpooled layer, exactly the gradient at ``h``."""
        module, pool = hook_module(model, self.layer), layer_pool(model, self.layer)
        seen: dict[str, Tensor] = {}

        def splice(_m: nn.Module, _inp: Any, out: Tensor) -> Tensor:
            h = pool(out).detach()
            delta = torch.zeros_like(h, requires_grad=True)
            seen["h"], seen["delta"] = h, delta
            return _shift(out, -delta)

        handle = module.register_forward_hook(splice)
        try:
            out = avalanche_forward(model, x, t)
        finally:
            handle.remove()
        if "delta" not in seen:
            raise RuntimeError("sae-reg: the hooked layer did not run")
        # per-sample gradients: d(sum_n l_n)/d delta_n = dl_n/d delta_n
        gh, = torch.autograd.grad(criterion(out, y) * len(y), seen["delta"])
        with torch.no_grad():
            return self.codes(seen["h"]), gh @ self.sae.W_dec.t()

    def ablation_hook(self, model: nn.Module, idx: Tensor) -> Any:
        """A forward hook at ``L`` removing the masked latents' SAE contributions from ``h``."""
        pool = layer_pool(model, self.layer)
        keep = torch.zeros(self.sae.n_latents, dtype=torch.bool, device=idx.device)
        keep[idx] = True

        def hook(_m: nn.Module, _inp: Any, out: Tensor) -> Tensor:
            z = self.sae.encode(pool(out)) * keep.to(out.dtype)
            return _shift(out, z @ self.sae.W_dec)

        return hook_module(model, self.layer).register_forward_hook(hook)


class ParamFeatures:
    """The identity over parameters as a dictionary, ``f(x; theta) = theta`` (flattened,
    ``[1, P]``): the weight-space special case in which sae-reg's protect term is EWC's penalty."""

    def __init__(self) -> None:
        self.star: Tensor | None = None

    @staticmethod
    def flat(model: nn.Module) -> Tensor:
        return torch.cat([p.reshape(-1) for p in model.parameters()])[None]

    def attach(self, model: nn.Module) -> None:
        self.star = self.flat(model).detach().clone()

    def detach(self) -> None:
        self.star = None

    def live(self, model: nn.Module) -> Tensor:
        return self.flat(model)

    def reference(self, x: Tensor) -> Tensor:
        if self.star is None:
            raise RuntimeError("ParamFeatures: attach() first")
        return self.star

    def values_and_grads(self, model: nn.Module, criterion: Any, x: Tensor, y: Tensor,
                         t: Tensor) -> tuple[Tensor, Tensor]:
        """One row per sample: ``theta`` and ``dl_n/dtheta``."""
        params = list(model.parameters())
        grads = []
        for n in range(len(y)):
            loss = criterion(avalanche_forward(model, x[n:n + 1], t[n:n + 1]), y[n:n + 1])
            grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
        g = torch.stack(grads)
        return self.flat(model).detach().expand_as(g), g


# ------------------------------------------------------------------ the plugin

def _experience_batches(strategy: Any, max_samples: int, seed: int,
                        batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(x, y, t) batches of at most ``max_samples`` rows (seeded) of the current experience's
    own training data: ``strategy.experience.dataset``, never a buffer or an older experience
    (:func:`clbench.run.fastdata.experience_rows`); x and y on the strategy's device."""
    rows = sample_rows(len(strategy.experience.dataset), max_samples, seed)
    x, y, t = experience_rows(strategy, rows)
    for s in range(0, len(rows), batch_size):
        yield (x[s:s + batch_size].to(strategy.device), y[s:s + batch_size].to(strategy.device),
               t[s:s + batch_size])


class SAERegPlugin(SupervisedPlugin):
    """Adds ``lam * protect + guide_lam * guide`` (module docstring) to every training loss from
    the second experience on; builds the feature mask at the end of each experience.

    A plain Avalanche plugin: ``SAERegPlugin("fc2", SAERegConfig(lam=1.0), seed=0)``."""

    def __init__(self, layer: str, config: SAERegConfig | None = None, *, seed: int = 0,
                 sae_model: SAEBase | None = None, features: FeatureMap | None = None,
                 **overrides: Any) -> None:
        """``layer``: the hooked layer (module docstring); ``config``: the settings (default
        :class:`SAERegConfig`), with ``overrides`` (its field names) replacing some of them;
        ``seed``: rows and SAE training; ``sae_model``: a frozen SAE to use as is (default:
        ``config.sae_path`` if set, else one trained after experience 1); ``features``: another
        dictionary altogether (:class:`ParamFeatures`)."""
        super().__init__()
        self.layer, self.seed = layer, seed
        self.config = replace(config or SAERegConfig(), **overrides)
        if features is None and sae_model is None and self.config.sae_path:
            sae_model = load_sae(self.config.sae_path)
        self.features: FeatureMap | None = features
        if features is None and sae_model is not None:
            self.features = SAEFeatures(layer, sae_model)
        # persisted between experiences: the mask and its weights (plus the SAE in features)
        self.mask_idx: Tensor = torch.zeros(0, dtype=torch.long)
        self.mask_w: Tensor = torch.zeros(0)
        self.mask_sizes: list[int] = []
        self._active = False
        self._dev_mask: tuple[Tensor, Tensor] | None = None   # the mask on the model's device

    @property
    def sae(self) -> SAEBase | None:
        return getattr(self.features, "sae", None)

    # --------------------------------------------------------------- building blocks

    def fit_sae(self, strategy: Any) -> None:
        """Train the dictionary on the current experience's activations, then freeze it."""
        c, e = self.config, strategy.experience.current_experience
        rows = sample_rows(len(strategy.experience.dataset), c.max_samples, self.seed * 1000 + e)
        x = experience_rows(strategy, rows)[0].to(strategy.device)
        fitted = fit_layer_sae(strategy.model, self.layer, x, kind=c.sae, expansion=c.expansion,
                               k=c.k, steps=c.sae_steps, seed=self.seed)
        self.features = SAEFeatures(self.layer, fitted.sae)

    def build_mask(self, strategy: Any) -> tuple[Tensor, Tensor]:
        """``(M_t, w_t)`` from the current experience's data (eval mode, model unchanged)."""
        assert self.features is not None
        model = strategy.model
        was_training = model.training
        model.eval()
        c, e = self.config, strategy.experience.current_experience
        fs, gs = [], []
        try:
            for x, y, t in _experience_batches(strategy, c.max_samples, self.seed * 1000 + e):
                f, g = self.features.values_and_grads(model, c.criterion, x, y, t)
                fs.append(f)
                gs.append(g)
        finally:
            model.train(was_training)
            model.zero_grad(set_to_none=True)
        omega = importance(torch.cat(fs), torch.cat(gs), c.importance)
        idx = select_mask(omega, c.q, c.top_m)
        w = omega[idx]
        if c.normalize and len(idx):
            w = w / w.sum().clamp_min(1e-30)
        return idx.cpu(), w.detach().cpu()

    def penalty(self, strategy: Any) -> Tensor:
        """``lam * protect + guide_lam * guide`` for the current mini-batch (after its forward)."""
        assert self.features is not None
        c = self.config
        if self._dev_mask is None or self._dev_mask[0].device != torch.device(strategy.device):
            self._dev_mask = (self.mask_idx.to(strategy.device), self.mask_w.to(strategy.device))
        idx, w = self._dev_mask
        total = strategy.loss.new_zeros(())
        needs_features = c.lam > 0 or (c.guide == "recruit" and c.guide_lam > 0)
        if needs_features:
            f = self.features.live(strategy.model)
            f_ref = self.features.reference(strategy.mb_x)
            if c.lam > 0:
                total = total + c.lam * protect_term(f, f_ref, idx, w, c.rho)
            if c.guide == "recruit" and c.guide_lam > 0:
                total = total + c.guide_lam * recruit_term(f, f_ref, idx, w)
        if c.guide == "ablate" and c.guide_lam > 0:
            if not isinstance(self.features, SAEFeatures):
                raise ClbenchError("sae-reg guide=ablate needs an SAE dictionary")
            handle = self.features.ablation_hook(strategy.model, idx)
            try:
                out = avalanche_forward(strategy.model, strategy.mb_x, strategy.mb_task_id)
            finally:
                handle.remove()
            total = total + c.guide_lam * c.criterion(out, strategy.mb_y)
        return total

    # --------------------------------------------------------------- Avalanche hooks

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._active = self.features is not None and len(self.mask_idx) > 0
        if self._active:
            self.features.attach(strategy.model)

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self._active:
            strategy.loss = strategy.loss + self.penalty(strategy)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.features is not None:
            self.features.detach()   # drops theta*: only (M, w) and the SAE persist
        self._active = False
        if self.features is None:
            self.fit_sae(strategy)
        idx, w = self.build_mask(strategy)
        self.mask_sizes.append(len(idx))
        self.mask_idx, self.mask_w = merge_mask(self.mask_idx, self.mask_w, idx, w)
        self._dev_mask = None


def load_sae(path: str) -> SAEBase:
    """An SAE written by ``SAEBase.save`` (TopK or ReLU+L1), loaded with weights_only."""
    if not Path(path).is_file():
        raise ClbenchError(f"sae-reg.sae_path={path}: no such file; give a file written by "
                           f"SAEBase.save, or leave it empty to train the SAE after experience 1")
    for cls in (TopKSAE, ReLUL1SAE):
        try:
            return cls.load(path)
        except ClbenchError:
            continue
        except Exception as e:  # noqa: BLE001  (not a torch file, wrong keys)
            raise ClbenchError(f"sae-reg.sae_path={path}: not a clbench SAE file ({e})") from None
    raise ClbenchError(f"sae-reg.sae_path={path}: holds neither a TopKSAE nor a ReLUL1SAE")


def _check(p: dict[str, Any]) -> None:
    """Validate resolved ``sae-reg.*`` parameters by building the config."""
    from_params(SAERegConfig, p)


@register_strategy(
    "sae-reg", check=_check, defaults={"layer": "", **cli_defaults(SAERegConfig)},
    description="SAE-guided activation regularization: protects important SAE features of "
                "old tasks, keeps only a feature mask (arXiv 2606.26629)")
def sae_reg(p: dict[str, Any], ctx: BuildContext) -> SAERegPlugin:
    config = from_params(SAERegConfig, p)
    layer = p["layer"] or default_layer(ctx.model)
    hook_module(ctx.model, layer)  # an unknown layer fails here, with the known names
    plugin = SAERegPlugin(layer, config, seed=ctx.seed)   # loads config.sae_path, if set
    if plugin.sae is not None:
        width = capture(ctx.model, layer, ctx.stream.x_train[:2]).shape[1]
        if plugin.sae.d_in != width:
            raise ClbenchError(f"sae-reg.sae_path={config.sae_path}: the SAE reads "
                               f"{plugin.sae.d_in}-d inputs but layer {layer!r} is {width}-d")
    return plugin
