"""Tiny dataset files in the real on-disk formats, written into a temporary folder.

    idx_set(folder, gz=True)      -> the four MNIST-style IDX files (6 train / 4 test, 28x28)
    cifar10_set(folder) / cifar100_set(folder)  -> the torchvision "python version" pickles

Each builder returns the arrays it wrote so a test can compare what the loader read back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.data.formats import N_TEST, N_TRAIN, cifar_batch, write_idx, write_pickle

IdxSet = dict[str, np.ndarray]


@pytest.fixture
def idx_set() -> Callable[..., IdxSet]:
    """Builder of an MNIST-style folder: ``idx_set(folder, gz=False) -> {stem: array}``."""

    def build(folder: Path, gz: bool = False) -> IdxSet:
        rng = np.random.default_rng(0)
        arrays = {
            "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
        }
        folder.mkdir(parents=True, exist_ok=True)
        for stem, arr in arrays.items():
            write_idx(folder / (stem + (".gz" if gz else "")), arr)
        return arrays

    return build


@pytest.fixture
def cifar10_set() -> Callable[[Path], dict[str, dict[str, object]]]:
    """Builder of ``cifar-10-batches-py/``: five train batches of 3, a test batch of 4."""

    def build(folder: Path) -> dict[str, dict[str, object]]:
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        sizes = [3, 3, 3, 3, 3, 4]
        batches = {f: cifar_batch(n, 10, "labels", i) for i, (f, n) in enumerate(zip(names, sizes))}
        for f, batch in batches.items():
            write_pickle(folder / f, batch)
        return batches

    return build


@pytest.fixture
def cifar100_set() -> Callable[[Path], dict[str, dict[str, object]]]:
    """Builder of ``cifar-100-python/``: ``train`` (8 images) and ``test`` (5)."""

    def build(folder: Path) -> dict[str, dict[str, object]]:
        folder.mkdir(parents=True, exist_ok=True)
        batches = {}
        for i, (f, n) in enumerate((("train", 8), ("test", 5))):
            batch = cifar_batch(n, 100, "fine_labels", i)
            fine: list[int] = batch["fine_labels"]  # type: ignore[assignment]
            batch["coarse_labels"] = [v // 5 for v in fine]
            batches[f] = batch
            write_pickle(folder / f, batch)
        return batches

    return build
