"""CIFAR readers: round trip of the pickle layout, malformed files, and the restricted unpickler."""
from __future__ import annotations

import _codecs
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.data.cifar import load_cifar10, load_cifar100, read_batch
from clbench.errors import DataError
from tests.data.formats import cifar_batch, py2_cifar_pickle, write_pickle


def test_cifar10_round_trip(tmp_path: Path, cifar10_set) -> None:
    batches = cifar10_set(tmp_path)
    raw = load_cifar10(tmp_path)
    assert raw.x_train.shape == (15, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert raw.n_classes == 10 and raw.y_train.dtype == torch.int64
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    want_y = np.concatenate([b["labels"] for b in train])
    np.testing.assert_array_equal(raw.y_train.numpy(), want_y)
    np.testing.assert_array_equal(raw.y_test.numpy(), batches["test_batch"]["labels"])


@pytest.mark.parametrize("label_key, n_classes", [("labels", 10), ("fine_labels", 100)])
def test_python2_pickle(tmp_path: Path, label_key: str, n_classes: int) -> None:
    data = np.random.default_rng(0).integers(0, 256, (5, 3072), dtype=np.uint8)
    labels = [0, n_classes - 1, 3, 4, 1]
    path = tmp_path / "batch"
    path.write_bytes(py2_cifar_pickle(data, labels, label_key))
    x, y, blob = read_batch(path, label_key, n_classes)
    np.testing.assert_array_equal(x.reshape(5, -1), data)
    assert y.tolist() == labels and blob == path.read_bytes()


def test_rows_are_red_green_blue_planes(tmp_path: Path) -> None:
    batch = cifar_batch(2, 10, "labels", 0)
    batch["data"] = np.repeat(np.array([[0, 1, 2]], np.uint8), 1024, axis=1).repeat(2, axis=0)
    x, y, _ = read_batch(write_pickle(tmp_path / "b", batch), "labels", 10)
    assert x.shape == (2, 3, 32, 32)
    assert [int(x[0, c].min()) for c in range(3)] == [0, 1, 2]
    assert [int(x[0, c].max()) for c in range(3)] == [0, 1, 2]


def test_cifar100_fine_labels(tmp_path: Path, cifar100_set) -> None:
    batches = cifar100_set(tmp_path)
    raw = load_cifar100(tmp_path)
    assert raw.x_train.shape == (8, 3, 32, 32) and raw.n_classes == 100
    np.testing.assert_array_equal(raw.y_train.numpy(), batches["train"]["fine_labels"])
    np.testing.assert_array_equal(raw.y_test.numpy(), batches["test"]["fine_labels"])


def test_bytes_keys_are_accepted(tmp_path: Path) -> None:
    batch = {k.encode(): v for k, v in cifar_batch(3, 10, "labels", 0).items()}
    x, y, _ = read_batch(write_pickle(tmp_path / "b", batch), "labels", 10)
    assert x.shape == (3, 3, 32, 32) and y.shape == (3,)


def _bad(batch: dict, kind: str) -> object:
    if kind == "shape":
        batch["data"] = batch["data"][:, :3000]
    elif kind == "dtype":
        batch["data"] = batch["data"].astype(np.float32)
    elif kind == "missing-key":
        del batch["labels"]
    elif kind == "label-range":
        batch["labels"][0] = 10
    elif kind == "label-count":
        batch["labels"] = batch["labels"][:-1]
    elif kind == "not-a-dict":
        return [batch]
    return batch


@pytest.mark.parametrize(
    "kind, words",
    [
        ("shape", r"expected uint8 \[N, 3072\]"),
        ("dtype", r"expected uint8 \[N, 3072\]"),
        ("missing-key", "no 'labels' entry"),
        ("label-range", r"outside 0\.\.9"),
        ("label-count", "expected 3 integers"),
        ("not-a-dict", "expected a dict"),
    ],
)
def test_malformed_batch(tmp_path: Path, kind: str, words: str) -> None:
    path = write_pickle(tmp_path / "data_batch_1", _bad(cifar_batch(3, 10, "labels", 0), kind))
    with pytest.raises(DataError, match=words) as err:
        read_batch(path, "labels", 10)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "test_batch", cifar_batch(3, 10, "labels", 0))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match="unreadable pickle.*re-download it or delete it"):
        read_batch(path, "labels", 10)


class _RunsCommand:
    """Pickles as a call to ``os.system`` — what a malicious file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _OddCodec:
    """Pickles as ``_codecs.encode(..., 'rot13')``; only latin-1 is allowed."""

    def __reduce__(self) -> tuple:
        return (_codecs.encode, ("abc", "rot13"))


def test_forbidden_global_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = cifar_batch(3, 10, "labels", 0)
    batch["filenames"] = _RunsCommand(marker)
    path = write_pickle(tmp_path / "data_batch_1", batch)
    with pytest.raises(DataError, match=r"refers to (posix|os|nt)\.system.*refusing"):
        read_batch(path, "labels", 10)
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    batch = cifar_batch(3, 10, "labels", 0)
    batch["batch_label"] = _OddCodec()
    with pytest.raises(DataError, match="refusing _codecs.encode"):
        read_batch(write_pickle(tmp_path / "b", batch), "labels", 10)
