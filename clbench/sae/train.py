"""Training loops for the SAEs and the crosscoder.

    >>> import torch
    >>> from clbench.sae.train import SAETrainConfig, train_sae, train_crosscoder
    >>> acts = torch.randn(10_000, 256)                          # captured activations [N, D]
    >>> cfg = SAETrainConfig(n_latents=2048, k=32, steps=500)
    >>> sae, stats = train_sae(acts, cfg)                        # TopKSAE, AuxK on dead latents
    >>> sae, stats = train_sae(acts, cfg, kind="relu_l1")        # ReLUL1SAE
    >>> cc, stats = train_crosscoder([acts, acts[:, :64]], cfg)  # TopKCrosscoder, d_ins [256, 64]

One step: a batch drawn without replacement (seeded ``torch.Generator``; a fresh permutation
each epoch, the last partial batch dropped), loss, backward, the decoder gradient's component
parallel to each decoder direction removed, Adam, decoder directions renormalised. Per-step
losses are kept as detached tensors and turned into floats once, at the end.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from clbench.errors import ClbenchError
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.relu_l1 import ReLUL1SAE
from clbench.sae.topk import AUXK_COEFF, SAEBase, TopKSAE, auxk_loss

SAE_KINDS = ("topk", "relu_l1")


@dataclass
class SAETrainConfig:
    """How to train a dictionary. ``lr=None`` means ``2e-4 / sqrt(n_latents / 2**14)`` (Gao et
    al. 2024's scaling law); ``steps=None`` means ``epochs`` passes over the data. ``dead_steps``
    counts training steps; ``k_aux=None`` means ``d_in // 2``; ``auxk_coeff=0`` turns AuxK off.
    ``l1_coeff`` is used by ``relu_l1`` only, ``k``/``auxk_*`` by TopK models only."""

    n_latents: int = 2048
    k: int = 32
    lr: float | None = None
    batch_size: int = 4096
    steps: int | None = None
    epochs: int = 10
    seed: int = 0
    auxk_coeff: float = AUXK_COEFF
    dead_steps: int = 256
    k_aux: int | None = None
    l1_coeff: float = 1e-3
    b_pre_init: str = "median"

    def __post_init__(self) -> None:
        for name in ("n_latents", "k", "batch_size", "epochs", "dead_steps"):
            if getattr(self, name) < 1:
                raise ClbenchError(f"SAETrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ClbenchError(f"SAETrainConfig.steps must be >= 1, got {self.steps}")
        if self.b_pre_init not in ("median", "mean"):
            raise ClbenchError(f"unknown b_pre_init {self.b_pre_init!r}; known: median, mean")

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else 2e-4 / math.sqrt(self.n_latents / 2**14)


StepLoss = Callable[[Any, Tensor], tuple[Tensor, Tensor | None]]


def _topk_step(cfg: SAETrainConfig) -> StepLoss:
    dead_steps = cfg.dead_steps if cfg.auxk_coeff > 0 else None

    def step(model: TopKSAE, xb: Tensor) -> tuple[Tensor, Tensor | None]:
        code = model.encode_sparse(xb, dead_steps=dead_steps, k_aux=cfg.k_aux)
        x_hat = model.decode_sparse(code.vals, code.idx)
        loss = model.recon_loss(x_hat, xb)
        if code.aux_vals is None or code.aux_idx is None:
            return loss, None
        aux_hat = model.decode_sparse(code.aux_vals, code.aux_idx, bias=False)
        return loss, auxk_loss(aux_hat, xb - x_hat, cfg.auxk_coeff, model.recon_loss)

    return step


def _relu_l1_step(cfg: SAETrainConfig) -> StepLoss:
    def step(model: ReLUL1SAE, xb: Tensor) -> tuple[Tensor, Tensor | None]:
        return model.loss(xb, cfg.l1_coeff), None

    return step


def _fit(model: SAEBase, x: Tensor, cfg: SAETrainConfig, step_loss: StepLoss,
         progress: bool) -> dict[str, Any]:
    """Run the training loop on ``x [N, d_in]``; returns plain-value statistics."""
    gen = torch.Generator().manual_seed(cfg.seed)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps = cfg.steps if cfg.steps is not None else cfg.epochs * (n // bs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.resolved_lr())
    losses = torch.zeros(steps, device=x.device)
    aux_losses = torch.zeros(steps, device=x.device)
    model.train()
    perm, pos = torch.randperm(n, generator=gen).to(x.device), 0
    bar = tqdm(total=steps, desc=f"train {type(model).__name__}", disable=not progress)
    t0 = time.perf_counter()
    for step in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen).to(x.device), 0
        xb = x[perm[pos:pos + bs]]
        pos += bs
        loss, aux = step_loss(model, xb)
        opt.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()
        model.remove_parallel_grad_()
        opt.step()
        model.normalize_decoder_()
        losses[step] = loss.detach()
        if aux is not None:
            aux_losses[step] = aux.detach()
        bar.update()
    seconds = time.perf_counter() - t0
    bar.close()
    model.eval()
    return {
        "steps": steps,
        "batch_size": bs,
        "lr": cfg.resolved_lr(),
        "loss": losses.tolist(),
        "aux_loss": aux_losses.tolist(),
        "final_loss": float(losses[-max(1, steps // 20):].mean()),
        "train_seconds": seconds,
        "samples_per_s": steps * bs / seconds,
        "dead_fraction": float(model.dead_mask(cfg.dead_steps).float().mean()),
        "config": asdict(cfg),
    }


def _init_b_pre(model: SAEBase, x: Tensor, cfg: SAETrainConfig) -> None:
    gen = torch.Generator().manual_seed(cfg.seed)
    sample = torch.randperm(x.shape[0], generator=gen)[:10_000].to(x.device)
    model.init_b_pre(x[sample], method=cfg.b_pre_init)


def train_sae(x: Tensor, cfg: SAETrainConfig, kind: str = "topk", *,
              sae: SAEBase | None = None, progress: bool = False) -> tuple[SAEBase, dict[str, Any]]:
    """Train a ``kind`` SAE on activations ``x [N, D]``; returns ``(sae in eval mode, stats)``.

    A fresh SAE (seeded by ``cfg.seed``, ``b_pre`` from the data) is built unless ``sae`` is
    given, in which case that one is trained further in place.
    """
    if kind not in SAE_KINDS:
        raise ClbenchError(f"unknown SAE kind {kind!r}; known: {', '.join(SAE_KINDS)}")
    if sae is None:
        d = x.shape[1]
        sae = (TopKSAE(d, cfg.n_latents, cfg.k, seed=cfg.seed) if kind == "topk"
               else ReLUL1SAE(d, cfg.n_latents, seed=cfg.seed)).to(x.device)
        _init_b_pre(sae, x, cfg)
    step = _topk_step(cfg) if isinstance(sae, TopKSAE) else _relu_l1_step(cfg)
    return sae, _fit(sae, x, cfg, step, progress)


def train_crosscoder(xs: Sequence[Tensor], cfg: SAETrainConfig, *,
                     cc: TopKCrosscoder | None = None,
                     progress: bool = False) -> tuple[TopKCrosscoder, dict[str, Any]]:
    """Train a :class:`TopKCrosscoder` on sources ``xs`` (each ``[N, d_s]``, same rows)."""
    if len({x.shape[0] for x in xs}) != 1:
        raise ClbenchError(f"crosscoder sources need the same rows, got {[x.shape for x in xs]}")
    x = torch.cat(list(xs), dim=1)
    if cc is None:
        cc = TopKCrosscoder([s.shape[1] for s in xs], cfg.n_latents, cfg.k,
                            seed=cfg.seed).to(x.device)
        _init_b_pre(cc, x, cfg)
    return cc, _fit(cc, x, cfg, _topk_step(cfg), progress)
