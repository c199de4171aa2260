"""Monosemanticity of a language model's hooked block, before training and after the stream.

    >>> block = text_mono(model, ts, RowClasses.of(ts), layer="block29", settings=MONO_DEFAULTS,
    ...                   seed=0)
    >>> block["mono_csi"], block["neuron_u_hy"], block["rows_eval"]

The text runner's counterpart of :mod:`clbench.run.mono`, on the rows that have a class: the
training and test rows of text-v1's classification tasks (``supersense``, ``fortune-topic``;
:class:`clbench.data.text_classes.RowClasses`; 14 classes), each row read at the prompt's last
token (:func:`clbench.sae.capture.prompt_end`, the state the answer is predicted from; it has not
seen the answer, which spells the label):

1. ``a_i = block_L(x_i)[p_i] [d]`` on at most ``max_train`` seeded training rows and
   ``max_eval`` test rows of those tasks;
2. a fresh TopK SAE (``expansion x d`` latents, ``k``, ``steps``, ``batch_size``, ``lr``: the
   run's ``mono.*`` settings, the same for every strategy) on the training rows, and on the test
   rows its quality (``sae_*``) and the monosemanticity of its codes against the classes
   (``mono_*``, :func:`clbench.metrics.mono.monosemanticity`);
3. the block's *neurons*: the MLP's hidden units ``u = act(W_gate a') * (W_up a') [d_ff]`` (the
   input of ``down_proj``) at the same token, positive part ``max(u, 0)`` (SiLU-gated units are
   signed; SAE-ception measures non-negative units), :func:`clbench.metrics.mono.neuron_selectivity`
   (``neuron_csi``, ``neuron_u_hy``, ``neuron_u_hb``).

Cost: one forward of the trained blocks per row (the frozen prefix from the prefix cache; the
classification tasks' gold test rows are not in the warmed cache, so the first block of a
process computes their prefix once: about 200 rows for text-v1's default sizes), one SAE of
``steps`` steps on at most ``max_train`` rows, and the metrics (silhouette on at most 2,000 rows,
``14 x 3`` logistic probes); a few seconds to half a minute on a CPU for SmolLM2, run twice per
text run (before and after). It runs under a forked RNG and in eval mode, so it never changes
what the strategy learns. ``--set mono.when=off`` skips it.
"""
from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clbench.data.text_classes import RowClasses
from clbench.data.text_stream import TextStream
from clbench.metrics.mono import monosemanticity, neuron_selectivity
from clbench.sae.capture import at_prompt_end, capture_prompt_end, hook_module
from clbench.sae.quality import QUALITY_METRICS
from clbench.sae.train import SAETrainConfig, train_sae


def _finite(v: float) -> float | None:
    """``v``, or None for an undefined metric (NaN: JSON has no NaN)."""
    return float(v) if math.isfinite(v) else None


def _sample(idx: Tensor, limit: int, g: torch.Generator) -> Tensor:
    return idx[torch.randperm(len(idx), generator=g)[:limit]] if len(idx) > limit else idx


def _block_and_neurons(model: nn.Module, layer: str, x: Tensor, batch_size: int = 64
                       ) -> tuple[Tensor, Tensor]:
    """``[N, d]`` block outputs and ``[N, d_ff]`` MLP hidden units at each row's prompt end."""
    block = hook_module(model, layer)
    down = getattr(getattr(block, "mlp", None), "down_proj", None)
    neurons: list[Tensor] = []
    current: list[Tensor] = []

    def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
        neurons.append(at_prompt_end(args[0], current[-1]).to(x.device))

    handle = down.register_forward_pre_hook(pre) if isinstance(down, nn.Module) else None
    outs = []
    try:
        for s in range(0, len(x), batch_size):
            current.append(x[s:s + batch_size].to(next(model.parameters()).device))
            outs.append(capture_prompt_end(model, layer, current[-1], batch_size).to(x.device))
    finally:
        if handle is not None:
            handle.remove()
    empty = x.new_zeros(len(x), 0, dtype=torch.float32)
    return torch.cat(outs) if outs else empty, torch.cat(neurons) if neurons else empty


def text_mono(model: nn.Module, ts: TextStream, classes: RowClasses, layer: str,
              settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """``sae_*``, ``mono_*`` and ``neuron_*`` of ``model``'s ``layer`` (module docstring), with
    ``rows_train``, ``rows_eval`` and ``seconds``; ``{}`` when the stream has no class."""
    if not classes.tasks:
        return {}
    t0 = time.perf_counter()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            g = torch.Generator().manual_seed(seed)
            tr, _ = classes.train_rows(ts)
            te, y_te = classes.test_rows(ts)
            pick = torch.randperm(len(te), generator=g)[:settings["max_eval"]]
            te, y_te = te[pick], y_te[pick]
            tr = _sample(tr, settings["max_train"], g)
            a_tr, _ = _block_and_neurons(model, layer, ts.stream.x_train[tr])
            a_te, u_te = _block_and_neurons(model, layer, ts.stream.x_test[te])
            cfg = SAETrainConfig(n_latents=settings["expansion"] * a_tr.shape[1],
                                 k=min(settings["k"], a_tr.shape[1]), steps=settings["steps"],
                                 batch_size=min(settings["batch_size"], len(a_tr)),
                                 lr=settings["lr"], seed=seed)
            sae, _ = train_sae(a_tr, cfg)
            raw = monosemanticity(sae, a_te, y_te, seed=seed)
            neurons = neuron_selectivity(u_te.clamp_min(0), y_te) if u_te.shape[1] else {}
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out: dict[str, Any] = {(f"sae_{k}" if k in QUALITY_METRICS else f"mono_{k}"): _finite(v)
                           for k, v in raw.items()}
    out.update({k: _finite(v) for k, v in neurons.items()})
    out.update({"rows_train": len(tr), "rows_eval": len(te),
                "seconds": time.perf_counter() - t0})
    return out
