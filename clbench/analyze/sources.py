"""Stage 2 of ``clbench analyze``: activations of every (layer, checkpoint) source on the probe.

    >>> from clbench.analyze.sources import collect_sources, head_input_layer, pick_layers
    >>> head = head_input_layer(models[-1], probe.x)           # "fc2" (MLP), "cls" (ViT)
    >>> layers = pick_layers(models[-1], None, head)           # default: up to 3, ending at head
    >>> src = collect_sources(models, layers, probe.x)
    >>> src.acts[src.index(layer=0, ckpt=2)].shape             # [N, d_layer0]

A source ``s = l * T + t`` is layer ``l`` of the model saved after checkpoint ``t``. Its rows
are the hook layer's output pooled to ``[N, D]`` by the model's own pool
(:mod:`clbench.sae.capture`): for the ViT that is the **CLS token** of the block output, the
token the classifier reads (timm ``global_pool="token"``), so the last analyzed layer ``cls``
(the final norm's CLS token) is exactly the head's input ``forward_features(x)``; for the MLP
the hidden activations are already ``[N, D]``.

Each source is scaled to unit mean squared centered norm,
``a^s <- a^s / sqrt(mean_n ||a^s_n - mean(a^s)||^2)``, as Lindsey et al. (2024) normalise
crosscoder inputs: activations grow with depth and with training, and without this a decoder
norm would measure the layer's scale instead of where a feature lives. Directions, and so the
readout cosines, are unchanged by the scaling. The scale is computed on the crosscoder's fit
rows (``scale_rows``) and applied to every row, so the held-out rows are scaled by a number
they did not help make.

The *head-input layer* is found by measurement: the last hook layer whose pooled output equals
``forward_features(x)`` on a few probe rows. It is always analyzed (readout needs it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from clbench.errors import ClbenchError
from clbench.registry import unknown_name_message
from clbench.sae.capture import capture

#: at most this many layers are analyzed by default
DEFAULT_N_LAYERS = 3


@dataclass
class Sources:
    """Normalised activations ``acts[s]`` (``[N, d_s]``), ``s = l * T + t``."""

    layers: list[str]
    after: list[int]
    acts: list[Tensor]
    scales: list[float]
    head_layer: str | None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_ckpts(self) -> int:
        return len(self.after)

    def index(self, layer: int, ckpt: int) -> int:
        return layer * self.n_ckpts + ckpt

    def name(self, s: int) -> str:
        """``"<layer>@exp<j>"`` for source ``s``."""
        return f"{self.layers[s // self.n_ckpts]}@exp{self.after[s % self.n_ckpts]}"

    @property
    def widths(self) -> list[int]:
        return [int(a.shape[1]) for a in self.acts]

    def subset(self, rows: Tensor) -> Sources:
        """The same sources on probe rows ``rows`` only (the scales unchanged)."""
        return Sources(self.layers, self.after, [a[rows] for a in self.acts], self.scales,
                       self.head_layer)


@torch.no_grad()
def head_input_layer(model: nn.Module, x: Tensor, rows: int = 16) -> str | None:
    """The last hook layer whose pooled output is ``model.forward_features(x)``, or None."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats = model.forward_features(x[:rows].to(device)).to(x.device)
    model.train(was_training)
    found = None
    for name in model.hook_layers:
        a = capture(model, name, x[:rows])
        if a.shape == feats.shape and torch.allclose(a, feats, atol=1e-5, rtol=1e-4):
            found = name
    return found


def pick_layers(model: nn.Module, requested: list[str] | None, head_layer: str | None) -> list[str]:
    """The analyzed layers in the model's order: ``requested`` (checked), or by default up to
    :data:`DEFAULT_N_LAYERS` hook layers evenly spaced up to the head-input layer. The
    head-input layer is added when missing."""
    names = list(model.hook_layers)
    if requested:
        for name in requested:
            if name not in names:
                raise ClbenchError(unknown_name_message("layer", name, names)
                                   + f"; --layers takes these: {', '.join(names)}")
        chosen = set(requested)
    else:
        upto = names[:names.index(head_layer) + 1] if head_layer else names
        n = min(DEFAULT_N_LAYERS, len(upto))  # ViT: block2, block4, cls; MLP: fc1, fc2
        chosen = {upto[len(upto) - 1 - (i * len(upto)) // n] for i in range(n)}
    if head_layer:
        chosen.add(head_layer)
    return [n for n in names if n in chosen]


def _normalise(a: Tensor, name: str, rows: Tensor | None = None) -> tuple[Tensor, float]:
    fit = a if rows is None else a[rows]
    scale = float((fit - fit.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt())
    if not scale > 1e-12:
        raise ClbenchError(f"source {name} is constant on the probe (dead layer?); "
                           "leave that layer out of --layers")
    return a / scale, scale


def collect_sources(models: list[nn.Module], after: list[int], layers: list[str], x: Tensor,
                    head_layer: str | None, device: str = "cpu", batch_size: int = 512,
                    progress: bool = False, scale_rows: Tensor | None = None) -> Sources:
    """Capture every (layer, checkpoint) source on probe inputs ``x`` (models run on
    ``device``, activations come back to the CPU), normalised as the module docstring says
    (scales from rows ``scale_rows``; default all)."""
    raw: list[Tensor] = [x.new_zeros(0)] * (len(layers) * len(models))
    bar = tqdm(total=len(raw), desc="activations", disable=not progress)
    for t, model in enumerate(models):
        model.to(device)
        for l, layer in enumerate(layers):
            raw[l * len(models) + t] = capture(model, layer, x, batch_size=batch_size).float().cpu()
            bar.update()
        model.to("cpu")
    bar.close()
    return make_sources(raw, layers, after, head_layer, scale_rows)


def make_sources(raw: list[Tensor], layers: list[str], after: list[int],
                 head_layer: str | None, scale_rows: Tensor | None = None) -> Sources:
    """:class:`Sources` from raw activations ``raw[l * T + t]`` (``[N, d_l]``), normalised
    with scales computed on rows ``scale_rows`` (default all)."""
    if len(raw) != len(layers) * len(after):
        raise ValueError(f"{len(raw)} sources for {len(layers)} layers x {len(after)} checkpoints")
    T = len(after)
    pairs = [_normalise(a, f"{layers[s // T]}@exp{after[s % T]}", scale_rows)
             for s, a in enumerate(raw)]
    return Sources(list(layers), list(after), [a for a, _ in pairs], [c for _, c in pairs],
                   head_layer)
