"""IDX reader: round trip of plain and gzip files, and every malformed-file error."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.data.idx import IMAGES_MAGIC, LABELS_MAGIC, load_idx_folder, read_idx
from clbench.errors import DataError
from tests.data.formats import idx_bytes, write_idx


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path: Path, idx_set, gz: bool) -> None:
    arrays = idx_set(tmp_path, gz=gz)
    for stem, arr in arrays.items():
        path = tmp_path / (stem + (".gz" if gz else ""))
        got = read_idx(path, LABELS_MAGIC if "labels" in stem else IMAGES_MAGIC)
        np.testing.assert_array_equal(got, arr)

    raw = load_idx_folder("tiny", tmp_path)
    assert raw.x_train.shape == (6, 1, 28, 28) and raw.x_test.shape == (4, 1, 28, 28)
    assert raw.x_train.dtype == torch.float32 and raw.y_train.dtype == torch.int64
    np.testing.assert_array_equal(raw.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(raw.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # normalisation keeps the pixel order: a monotone map of the raw values
    x = arrays["train-images-idx3-ubyte"].reshape(-1).astype(np.float64)
    assert np.corrcoef(x, raw.x_train.reshape(-1).double().numpy())[0, 1] > 0.9999
    assert abs(raw.x_train.mean().item()) < 1e-5


def test_fingerprint_ignores_compression(tmp_path: Path, idx_set) -> None:
    idx_set(tmp_path / "plain")
    idx_set(tmp_path / "gz", gz=True)
    a, b = load_idx_folder("x", tmp_path / "plain"), load_idx_folder("x", tmp_path / "gz")
    assert a.fingerprint == b.fingerprint


def _corrupt(path: Path, kind: str) -> None:
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    if kind == "truncated":
        path.write_bytes(data[:-5])
    elif kind == "extra":
        path.write_bytes(data + b"\0\0")
    elif kind == "header":
        path.write_bytes(data[:9])
    elif kind == "magic":
        path.write_bytes(b"\x00\x00\x08\x01" + data[4:])
    elif kind == "gz-truncated":
        path.write_bytes(gzip.compress(data)[:-30])
    elif kind == "gz-garbage":
        path.write_bytes(b"\x1f\x8bnot really gzip")


@pytest.mark.parametrize(
    "kind, words",
    [
        ("truncated", "truncated IDX file"),
        ("extra", "unexpected bytes"),
        ("header", "truncated IDX header"),
        ("magic", "wrong IDX magic 0x00000801, expected 0x00000803"),
        ("gz-truncated", "corrupt gzip"),
        ("gz-garbage", "corrupt gzip"),
    ],
)
def test_malformed_file(tmp_path: Path, kind: str, words: str) -> None:
    path = tmp_path / ("images.gz" if kind.startswith("gz") else "images")
    _corrupt(path, kind)
    with pytest.raises(DataError) as err:
        read_idx(path, IMAGES_MAGIC)
    msg = str(err.value)
    assert words in msg and str(path) in msg and "re-download it or delete it" in msg
    assert "\n" not in msg


def test_labels_must_match_images(tmp_path: Path, idx_set) -> None:
    idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))  # 4 images
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_idx_folder("x", tmp_path)


def test_label_out_of_range(tmp_path: Path, idx_set) -> None:
    idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(4, 10, np.uint8))
    with pytest.raises(DataError, match=r"label 10 out of range 0\.\.9"):
        load_idx_folder("x", tmp_path)


def test_wrong_image_size(tmp_path: Path, idx_set) -> None:
    idx_set(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 32, 32), np.uint8))
    with pytest.raises(DataError, match="expected 28x28"):
        load_idx_folder("x", tmp_path)
