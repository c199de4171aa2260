"""Datasets that need no files: generated or bundled with an installed package.

    >>> from clbench.data.embedded import load_digits, load_mnist1d
    >>> load_digits().x_train.shape, load_mnist1d().x_test.shape
    (torch.Size([1437, 1, 8, 8]), torch.Size([1000, 40]))

- ``digits``: scikit-learn's 1797 8x8 handwritten digits, values 0..16, split 80/20 stratified
  by class with seed 0 (1437 train / 360 test), shape ``[N, 1, 8, 8]``.
- ``mnist1d``: the MNIST-1D generator (Greydanus 2020) with its default arguments and
  ``num_samples=5000``: 4000 train / 1000 test sequences of length 40, shape ``[N, 40]``.

The fingerprint is the sha256 of the generated arrays (x_train, y_train, x_test, y_test, before
normalisation), so a change in a package version that alters the data changes it.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from clbench.data.base import RawData, sha256_of, standardize

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
MNIST1D_SAMPLES = 5000


def load_digits() -> RawData:
    """scikit-learn digits as ``[N, 1, 8, 8]`` images, 10 classes."""
    # imported on use: scikit-learn takes about a second to import
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # [1797, 1, 8, 8], values 0..16
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return _raw("digits", xtr, ytr, xte, yte, n_classes=10)


def load_mnist1d() -> RawData:
    """MNIST-1D as ``[N, 40]`` sequences, 10 classes.

    ``mnist1d.data.make_dataset`` reseeds numpy's and Python's global generators; their states
    are restored afterwards so loading the data does not change a caller's random stream.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # on use, like scikit-learn above

    args = get_dataset_args()
    args.num_samples = MNIST1D_SAMPLES
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    xtr, xte = d["x"].astype(np.float32), d["x_test"].astype(np.float32)
    ytr, yte = d["y"].astype(np.int64), d["y_test"].astype(np.int64)
    return _raw("mnist1d", xtr, ytr, xte, yte, n_classes=10)


def _raw(
    name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, n_classes: int
) -> RawData:
    arrays = [np.ascontiguousarray(a) for a in (xtr, ytr, xte, yte)]
    fingerprint = sha256_of(*(a.tobytes() for a in arrays))
    xtr_t, ytr_t, xte_t, yte_t = (torch.from_numpy(a) for a in arrays)
    xtr_t, xte_t = standardize(xtr_t, xte_t)
    return RawData(name, xtr_t, ytr_t, xte_t, yte_t, n_classes, fingerprint)
