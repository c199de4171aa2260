"""The SAE quality and monosemanticity block of a run.

    >>> block = mono_block(model, stream, seen=[0, 1, 2], settings=MONO_DEFAULTS, seed=0)
    >>> block["mono_csi"], block["sae_fvu"]

For a named layer (``mono.layer``; default: the model's ``default_layer``, for the MLP its
first hidden layer, where SAE-ception hooks it), after the experiences in ``seen``:

1. capture the layer's activations on (at most ``max_train``) training rows of the seen
   experiences, and on (at most ``max_eval``) held-out test rows of the same classes;
2. train a fresh TopK SAE on the training activations with the fixed hyperparameters below —
   the same for every strategy, and recorded in the result — so runs are comparable;
3. report its quality on the held-out activations (``sae_*``: FVU, explained variance, L0,
   dead and dense fractions) and the monosemanticity of its codes against the true labels
   (``mono_*``: ARI, silhouettes, Davies-Bouldin, Calinski-Harabasz, CSI, uncertainty
   coefficient, sparse probing; definitions in :mod:`clbench.metrics.mono`).

It runs under a forked RNG, so computing it never changes what the strategy learns.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from clbench.errors import ClbenchError
from clbench.models import default_layer
from clbench.metrics.mono import monosemanticity
from clbench.metrics.registry import directions
from clbench.sae.capture import capture
from clbench.sae.quality import QUALITY_METRICS
from clbench.sae.train import SAETrainConfig, train_sae
from clbench.streams import Stream

#: ``--set mono.<key>=...`` defaults. ``when``: end | every | off. ``layer`` "": model default.
MONO_DEFAULTS: dict[str, Any] = {
    "when": "end", "layer": "", "expansion": 2, "k": 8, "steps": 40, "batch_size": 256,
    "lr": 0.002, "max_train": 4000, "max_eval": 600,
}
WHEN = ("end", "every", "off")

#: result metric name -> higher_is_better (the registry's ``sae`` and ``mono`` groups)
MONO_BLOCK_METRICS: dict[str, bool] = {**directions("sae"), **directions("mono")}


def check_settings(settings: dict[str, Any]) -> None:
    if settings["when"] not in WHEN:
        raise ClbenchError(f"--set mono.when={settings['when']}: choose one of {', '.join(WHEN)}")
    for key in ("expansion", "k", "steps", "batch_size", "max_train", "max_eval"):
        if settings[key] < 1:
            raise ClbenchError(f"--set mono.{key}={settings[key]}: must be at least 1")
    if not settings["lr"] > 0:
        raise ClbenchError(f"--set mono.lr={settings['lr']}: must be positive")


def _rows(idx: list[torch.Tensor], limit: int, g: torch.Generator) -> torch.Tensor:
    rows = torch.cat(idx)
    if len(rows) > limit:
        rows = rows[torch.randperm(len(rows), generator=g)[:limit]]
    return rows


def mono_block(model: nn.Module, stream: Stream, seen: list[int],
               settings: dict[str, Any], seed: int) -> dict[str, float]:
    """``sae_*`` and ``mono_*`` metrics of ``model`` after the experiences ``seen``."""
    layer = settings["layer"] or default_layer(model)
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(seed)
        tr = _rows([stream.train_idx[e] for e in seen], settings["max_train"], g)
        te = _rows([stream.test_idx[e] for e in seen], settings["max_eval"], g)
        a_tr = capture(model, layer, stream.x_train[tr])
        a_te = capture(model, layer, stream.x_test[te])
        cfg = SAETrainConfig(n_latents=settings["expansion"] * a_tr.shape[1], k=settings["k"],
                             steps=settings["steps"], batch_size=min(settings["batch_size"], len(a_tr)),
                             lr=settings["lr"], seed=seed)
        sae, _ = train_sae(a_tr, cfg)
        raw = monosemanticity(sae, a_te, stream.y_test[te], seed=seed)
    random.setstate(py_state)
    np.random.set_state(np_state)
    out = {}
    for k, v in raw.items():
        name = f"sae_{k}" if k in QUALITY_METRICS else f"mono_{k}"
        if name in MONO_BLOCK_METRICS:
            out[name] = float(v)
    return out
