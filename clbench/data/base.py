"""The in-memory form every dataset loader returns.

    >>> from clbench.data import load_dataset
    >>> raw = load_dataset("digits")
    >>> raw.x_train.shape, raw.x_train.dtype
    (torch.Size([1437, 1, 8, 8]), torch.float32)

A loader reads its files once, checks them, normalises the inputs to zero mean and unit
variance (statistics of the training split) and returns plain tensors, so no per-sample work
happens on the training hot path.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_DATA_ROOT = Path(os.environ.get("CLBENCH_DATA", "~/.cache/clbench/data")).expanduser()


@dataclass(frozen=True)
class RawData:
    """A labelled train/test pair held as tensors.

    ``x_*``: float32 ``[N, *input_shape]`` (images as ``[N, C, H, W]``), normalised.
    ``y_*``: int64 ``[N]`` class ids in ``0..n_classes-1``.
    ``fingerprint``: sha256 hex of the bytes that were read (files) or generated (embedded).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    fingerprint: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def sha256_of(*chunks: bytes) -> str:
    """sha256 hex digest over several byte strings, each length-prefixed."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def standardize(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x - mu) / sigma with per-channel mu, sigma of the training split (channel = dim 1 for
    images, one global statistic otherwise). The inputs are not modified."""
    # one fresh float32 copy each, normalised in place: large sets are memory-bound here
    x_train = x_train.to(torch.float32, copy=True)
    x_test = x_test.to(torch.float32, copy=True)
    if x_train.dim() == 4:
        dims = (0, 2, 3)
        mu = x_train.mean(dim=dims, keepdim=True)[0:1]
        sd = x_train.std(dim=dims, keepdim=True)[0:1].clamp_min(1e-8)
    else:
        mu = x_train.mean()
        sd = x_train.std().clamp_min(1e-8)
    return x_train.sub_(mu).div_(sd), x_test.sub_(mu).div_(sd)
