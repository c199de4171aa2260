"""The model registry: one entry point, ``create_model``, and a wildcard lister.

    >>> import torch
    >>> from clbench.models import create_model, list_models
    >>> list_models()
    ['cnn', 'convnextv2', 'mlp', 'resnet18', 'smollm2-135m', 'vit']
    >>> m = create_model("cnn", input_shape=(1, 28, 28), n_classes=10)
    >>> m(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> create_model("cnn", input_shape=(40,), n_classes=10)
    Traceback (most recent call last):
    clbench.errors.ClbenchError: model 'cnn' needs image input [C,H,W]; stream input is (40,); use --model mlp

Each model module registers its factories in :data:`MODELS` with a one-line description and
``input="any"`` (anything, flattened), ``input="image"`` (``[C, H, W]`` only) or ``input="text"``
(a language model, for text streams only: :mod:`clbench.models.text`). A factory is
``factory(input_shape, n_classes, *, option=default, ...)``; its keyword-only parameters are
the model's options, and ``create_model`` rejects any other keyword.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any

from clbench.errors import ClbenchError
from clbench.models import cnn, convnext, mlp, resnet, text, vit  # noqa: F401  (registers the models)
from clbench.models.base import MODELS, CLModel, default_layer, image_shape, pool_spatial_mean, pool_tokens_cls
from clbench.models.multihead import MultiHeadModel, make_multihead

__all__ = [
    "MODELS",
    "CLModel",
    "MultiHeadModel",
    "create_model",
    "default_layer",
    "image_shape",
    "list_models",
    "make_multihead",
    "model_options",
    "pool_spatial_mean",
    "pool_tokens_cls",
]


def model_options(name: str) -> dict[str, Any]:
    """The options ``create_model(name, ..., **options)`` accepts, with their defaults."""
    params = inspect.signature(MODELS.get(name).obj).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_model(name: str, input_shape: tuple[int, ...], n_classes: int, **kwargs: Any) -> CLModel:
    """Build registered model ``name`` (random init) for inputs ``[B, *input_shape]``.

    Raises :class:`ClbenchError` for an unknown name (with a did-you-mean hint), an unknown
    option, or an input shape the model cannot take.
    """
    entry = MODELS.get(name)
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ClbenchError(_unknown_options_message(name, unknown, sorted(options)))
    input_shape = tuple(int(d) for d in input_shape)
    if entry.meta.get("input") == "image":
        image_shape(name, input_shape)
    if n_classes < 1:
        raise ClbenchError(f"model {name!r} needs n_classes >= 1; got {n_classes}")
    return entry.obj(input_shape, n_classes, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style wildcard (``"conv*"``), sorted."""
    return MODELS.names(pattern)


def _unknown_options_message(name: str, unknown: list[str], known: list[str]) -> str:
    parts = []
    for opt in unknown:
        close = difflib.get_close_matches(opt, known, n=1, cutoff=0.5)
        parts.append(f"{opt!r} (did you mean {close[0]!r}?)" if close else repr(opt))
    known_text = ", ".join(known) if known else "none"
    return f"model {name!r} has no option {', '.join(parts)}; its options: {known_text}"
