"""Fitting a frozen SAE to one layer of a model (shared by ``sae-reg`` and ``sae-ception``).

    >>> fitted = fit_layer_sae(model, "fc1", x, kind="topk", expansion=2, k=16, steps=200, seed=0)
    >>> fitted.sae, fitted.acts, fitted.stats            # frozen SAE, its [N, d] inputs, stats

:func:`fit_layer_sae` records the pooled activations ``A = h_L(x) [N, d]`` of layer ``L``
(:func:`clbench.sae.capture.capture`: eval mode, no graph) and trains a fresh SAE of ``kind`` on
them (:func:`clbench.sae.train.train_sae`) with::

    n_latents = expansion * d      k = min(k, d)      batch = min(256, N)      lr = 1e-3

(``tokens=True``: ``A`` holds the layer's output at every real token instead,
:func:`clbench.sae.capture.capture_tokens`) for ``steps`` steps, seeded by ``seed``, under a forked CPU RNG (so a run's training draws are
the same with or without the SAE); the SAE is returned in eval mode with its gradients off and
cleared. Which rows ``x`` holds is the method's business (see
:func:`clbench.run.fastdata.experience_rows`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from clbench.sae.capture import capture, capture_tokens
from clbench.sae.topk import SAEBase
from clbench.sae.train import SAETrainConfig, train_sae

#: SAE training batch size (capped at the number of rows) and learning rate
SAE_BATCH, SAE_LR = 256, 1e-3


class FittedSAE(NamedTuple):
    """A frozen SAE, the activations ``[N, d]`` it was trained on, and its training statistics."""

    sae: SAEBase
    acts: Tensor
    stats: dict[str, Any]


def fit_layer_sae(model: nn.Module, layer: str, x: Tensor, *, kind: str, expansion: int, k: int,
                  steps: int, seed: int, tokens: bool = False) -> FittedSAE:
    """Train a fresh ``kind`` SAE on ``model``'s ``layer`` activations of ``x`` and freeze it.

    ``n_latents = expansion * d``, ``k = min(k, d)``, batch ``min(256, N)``, lr ``1e-3``,
    ``steps`` steps, seeded by ``seed``, under a forked CPU RNG. The activations (and so the
    SAE) live on ``x``'s device."""
    with torch.random.fork_rng(devices=[]):
        acts = capture_tokens(model, layer, x) if tokens else capture(model, layer, x)
    return fit_sae(acts, kind=kind, expansion=expansion, k=k, steps=steps, seed=seed)


def fit_sae(acts: Tensor, *, kind: str, expansion: int, k: int, steps: int,
            seed: int) -> FittedSAE:
    """:func:`fit_layer_sae` on activations ``acts [N, d]`` already recorded (e.g. one token per
    row, :func:`clbench.sae.capture.capture_prompt_end`): the same sizes, seed and forked RNG."""
    with torch.random.fork_rng(devices=[]):
        d = acts.shape[1]
        cfg = SAETrainConfig(n_latents=expansion * d, k=min(k, d), lr=SAE_LR, steps=steps,
                             batch_size=min(SAE_BATCH, len(acts)), seed=seed)
        sae, stats = train_sae(acts, cfg, kind=kind)
    sae.eval().requires_grad_(False).zero_grad(set_to_none=True)   # training's last grads
    return FittedSAE(sae, acts, stats)


__all__ = ["SAE_BATCH", "SAE_LR", "FittedSAE", "fit_layer_sae", "fit_sae"]
