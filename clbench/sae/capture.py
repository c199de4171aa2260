"""Activations of a model's named hook layer: recorded for SAE training, or tapped with graph.

    >>> import torch
    >>> from clbench.models import create_model
    >>> from clbench.sae.capture import LayerTap, capture
    >>> model = create_model("mlp", input_shape=(1, 28, 28), n_classes=10)
    >>> images = torch.randn(1000, 1, 28, 28)
    >>> acts = capture(model, "fc1", images)             # [1000, D], no graph, eval mode
    >>> with LayerTap(model, "fc1") as tap:              # training time
    ...     logits = model(images[:32])
    ...     tap.out.pow(2).mean().backward()             # tap.out [32, D] keeps its graph

A layer name is a key of ``model.hook_layers``, which maps it to a module path of
``model.named_modules()``; the module's raw output is pooled to ``[B, D]`` by
``model.pools[name]`` when the model defines one (CLS token, spatial mean, ...). A model
without ``hook_layers`` (any plain ``nn.Module``, e.g. in a user's own Avalanche script) names
its layers by their module paths in ``model.named_modules()`` (``"fc2"``, ``"body.0"``), whose
outputs must then already be ``[B, D]``.
"""
from __future__ import annotations

from types import TracebackType
from typing import Any, Callable

import torch
from torch import Tensor, nn

from clbench.errors import ClbenchError


def _model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", None) or model.__class__.__name__)


def hook_module(model: nn.Module, layer: str) -> nn.Module:
    """The module behind public layer name ``layer`` (for a model without ``hook_layers``: the
    module at path ``layer`` of ``model.named_modules()``); ClbenchError if the name is unknown."""
    layers: dict[str, str] | None = getattr(model, "hook_layers", None)
    if layers is None:   # a plain nn.Module: every submodule is a layer, named by its path
        layers = {name: name for name, _ in model.named_modules() if name}
    if layer not in layers:
        raise ClbenchError(f"unknown layer {layer!r} for model {_model_name(model)!r}; "
                           f"known: {', '.join(layers) or '(none)'}")
    modules = dict(model.named_modules())
    if layers[layer] not in modules:
        raise ClbenchError(f"model {_model_name(model)!r} maps layer {layer!r} to "
                           f"{layers[layer]!r}, which is not one of its modules")
    return modules[layers[layer]]


def layer_pool(model: nn.Module, layer: str) -> Callable[[Any], Tensor]:
    """The function pooling ``layer``'s raw output to ``[B, D]`` (identity when the model has none)."""
    pool = getattr(model, "pools", {}).get(layer)
    return pool if pool is not None else (lambda t: t)


class _Captured(Exception):
    """Raised by the capture hook once it has the layer's output: the rest is not needed."""


def raw_output(out: Any) -> Tensor:
    """A module's output tensor (the first element of a tuple, as some decoder blocks return)."""
    return out[0] if isinstance(out, tuple) else out


def real_tokens(model: nn.Module, out: Tensor) -> Tensor:
    """bool ``[B, T]``: the real (not padding) positions of a token layer's output ``[B, T, D]``
    from the model's latest forward (``model.token_mask()``; every position when it has none)."""
    mask = getattr(model, "token_mask", lambda: None)()
    if mask is None or tuple(mask.shape) != tuple(out.shape[:2]):
        return torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
    return mask.to(out.device).bool()


def _run_to_layer(model: nn.Module, module: nn.Module, hook: Callable[..., None], x: Tensor,
                  batch_size: int, outs: list[Tensor]) -> Tensor:
    """Run ``x`` in batches up to ``module`` (``hook`` appends to ``outs`` and raises
    :class:`_Captured`), in eval mode (the caller's mode restored); ``outs`` concatenated."""
    device = next(model.parameters()).device
    was_training = model.training
    handle = module.register_forward_hook(hook)
    model.eval()
    # every hook layer lies on the feature path, so run that: a multi-head model's forward
    # would also need task labels, which the features do not
    forward = getattr(model, "forward_features", model)
    # a language model's frozen prefix is looked up, not rerun, when the layer is past it
    cache_for = getattr(model, "prefix_cache_for", None)
    kwargs = {"prefix_cache": cache_for(module)} if cache_for is not None else {}
    try:
        for start in range(0, x.shape[0], batch_size):
            try:
                forward(x[start:start + batch_size].to(device), **kwargs)
            except _Captured:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(outs) if outs else x.new_zeros(0, 0)


@torch.no_grad()
def capture(model: nn.Module, layer: str, x: Tensor, batch_size: int = 512, *,
            transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Pooled activations ``[N, D]`` of ``layer`` for inputs ``x [N, ...]``.

    Runs ``model.forward_features`` (every hook layer is on the feature path) in eval mode
    without autograd (the caller's mode is restored) and stops each pass at the hooked layer.
    Batches go to the model's device; the result is on ``x``'s. ``transform`` maps the raw
    output before pooling (e.g. an SAE encoding every token: pooled codes, not codes of the pool).
    """
    module, pool = hook_module(model, layer), layer_pool(model, layer)
    outs: list[Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        raw = raw_output(out) if transform is not None else out
        outs.append(pool(transform(raw) if transform is not None else raw).to(x.device))
        raise _Captured

    return _run_to_layer(model, module, hook, x, batch_size, outs)


@torch.no_grad()
def capture_tokens(model: nn.Module, layer: str, x: Tensor, batch_size: int = 64) -> Tensor:
    """``[n_tokens, D]``: a token layer's raw output at every real position of the inputs
    ``x [N, ...]`` (:func:`real_tokens`), in row order; eval mode, no autograd, on ``x``'s device."""
    module = hook_module(model, layer)
    outs: list[Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        raw = raw_output(out)
        if raw.dim() != 3:
            raise ClbenchError(f"layer {layer!r} has no tokens: its output is {tuple(raw.shape)}")
        outs.append(raw[real_tokens(model, raw)].to(x.device))
        raise _Captured

    return _run_to_layer(model, module, hook, x, batch_size, outs)


class LayerTap:
    """Keeps the pooled output of ``layer`` from the latest forward pass, graph included.

    ``tap.out`` is ``[B, D]`` (``raw=True``: the unpooled output, e.g. ``[B, T, D]``) and shares the forward's autograd graph, so a loss on it reaches
    the parameters below the layer. The hook is removed by ``remove()`` or on leaving a
    ``with`` block.
    """

    def __init__(self, model: nn.Module, layer: str, *, raw: bool = False) -> None:
        self._pool = raw_output if raw else layer_pool(model, layer)
        self.out: Tensor | None = None
        self._handle = hook_module(model, layer).register_forward_hook(self._hook)

    def _hook(self, _m: nn.Module, _inp: Any, out: Any) -> None:
        self.out = self._pool(out)

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> LayerTap:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


def prompt_end(x: Tensor) -> Tensor:
    """``[B]`` long: in each packed text row ``x [B, 3, T]`` (ids, mask, predict mask;
    :mod:`clbench.data.text_stream`), the position of the prompt's last token, the first one
    whose predict mask is 1: the state the answer's first token is read from. It is a real
    token, never padding, and it has not seen the answer."""
    if x.dim() != 3 or x.shape[1] < 3:
        raise ClbenchError(f"prompt_end needs packed rows [B, 3, T], got {tuple(x.shape)}")
    predict = x[:, 2].bool()
    if not bool(predict.any(dim=1).all()):
        raise ClbenchError("a packed row has no answer position (its predict mask is all 0)")
    return predict.long().argmax(dim=1)


def at_prompt_end(raw: Tensor, x: Tensor) -> Tensor:
    """``[B, d]``: a token layer's output ``raw [B, T, d]`` at each row's :func:`prompt_end`
    (indexing keeps the graph)."""
    pos = prompt_end(x).to(raw.device)
    return raw[torch.arange(len(raw), device=raw.device), pos]


@torch.no_grad()
def capture_prompt_end(model: nn.Module, layer: str, x: Tensor, batch_size: int = 64) -> Tensor:
    """``[N, d]``: ``layer``'s output at each packed row's :func:`prompt_end`, eval mode, no
    autograd, on ``x``'s device. A model with a ``prefix_cache`` (the text runner's language
    model) reads its frozen prefix from it instead of recomputing the prefix."""
    module = hook_module(model, layer)
    outs: list[Tensor] = []
    cache = getattr(model, "prefix_cache", None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: list[Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        raw = raw_output(out)
        if raw.dim() != 3:
            raise ClbenchError(f"layer {layer!r} has no tokens: its output is {tuple(raw.shape)}")
        outs.append(at_prompt_end(raw, rows[-1]).to(x.device))
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, x.shape[0], batch_size):
            rows.append(x[start:start + batch_size].to(device))
            try:
                if cache is not None:
                    model.forward_features(rows[-1], prefix_cache=cache)
                else:
                    getattr(model, "forward_features", model)(rows[-1])
            except _Captured:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(outs) if outs else x.new_zeros(0, 0, dtype=torch.float32)
