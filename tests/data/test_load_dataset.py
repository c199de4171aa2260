"""``load_dataset`` and the ``DATASETS`` registry: embedded sets, folder resolution, download."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

import clbench.data as data
from clbench.data import DATASETS, RawData, load_dataset
from clbench.errors import ClbenchError, DataError

EMBEDDED = [e.name for e in DATASETS if e.meta["embedded"]]
FILE_BASED = [e.name for e in DATASETS if not e.meta["embedded"]]
FOLDER = {  # where torchvision puts each file-based set under the data root
    "fashion-mnist": "FashionMNIST/raw",
    "mnist": "MNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
}


@pytest.fixture(autouse=True)
def no_system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide /usr/share/datasets/fashion-mnist so tests see only their own files."""
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")


@pytest.fixture(scope="module")
def embedded() -> dict[str, RawData]:
    return {name: load_dataset(name) for name in EMBEDDED}


def test_registry_entries() -> None:
    want = ["digits", "mnist1d", "fashion-mnist", "mnist", "cifar10", "cifar100"]
    assert DATASETS.names() == sorted(want)
    for entry in DATASETS:
        assert entry.description and "\n" not in entry.description
        assert isinstance(entry.meta["embedded"], bool)
    assert set(FILE_BASED) == set(FOLDER)


def test_unknown_name_suggests() -> None:
    with pytest.raises(ClbenchError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion-mnst")


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_dataset(name: str, embedded: dict[str, RawData]) -> None:
    raw = embedded[name]
    assert raw.name == name and raw.n_classes == 10
    assert raw.x_train.dtype == torch.float32 and raw.y_train.dtype == torch.int64
    assert raw.x_train.shape[1:] == raw.x_test.shape[1:] == raw.input_shape
    assert len(raw.x_train) == len(raw.y_train) and len(raw.x_test) == len(raw.y_test)
    for y in (raw.y_train, raw.y_test):
        assert int(y.min()) == 0 and int(y.max()) == raw.n_classes - 1
    assert torch.isfinite(raw.x_train).all() and abs(raw.x_train.mean().item()) < 1e-4
    again = load_dataset(name)
    assert again.fingerprint == raw.fingerprint and torch.equal(again.x_test, raw.x_test)


def test_embedded_shapes(embedded: dict[str, RawData]) -> None:
    assert embedded["digits"].x_train.shape == (1437, 1, 8, 8)
    assert embedded["digits"].x_test.shape == (360, 1, 8, 8)
    assert embedded["mnist1d"].x_train.shape == (4000, 40)
    assert embedded["mnist1d"].x_test.shape == (1000, 40)


def test_digits_split_is_stratified(embedded: dict[str, RawData]) -> None:
    counts = torch.bincount(embedded["digits"].y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_mnist1d_keeps_global_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    from clbench.data import embedded as emb

    monkeypatch.setattr(emb, "MNIST1D_SAMPLES", 100)  # the RNG handling, not the data, is tested
    np.random.seed(123)
    random.seed(123)
    want = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    emb.load_mnist1d()
    assert (np.random.random(), random.random()) == want


@pytest.mark.parametrize("name", FILE_BASED)
def test_missing_files_name_the_folder(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, data_root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: no ")
    assert f"put the files in {tmp_path / FOLDER[name]}/ (torchvision layout)" in msg
    assert "--data-root DIR" in msg and "--download where a network exists" in msg
    assert ("apt-get install dataset-fashion-mnist" in msg) == (name == "fashion-mnist")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_folders_in_order(name: str, tmp_path: Path, idx_set) -> None:
    idx_set(tmp_path, gz=True)  # a copy in <root>/ itself is found ...
    at_root = load_dataset(name, data_root=tmp_path)
    assert at_root.x_train.shape == (6, 1, 28, 28) and at_root.name == name
    idx_set(tmp_path / FOLDER[name])  # ... but the torchvision folder comes first
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    assert load_dataset(name, data_root=str(tmp_path)).fingerprint == at_root.fingerprint


def test_fashion_mnist_system_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idx_set
) -> None:
    idx_set(tmp_path / "system", gz=True)
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", tmp_path / "system")
    raw = load_dataset("fashion-mnist", data_root=tmp_path / "empty")
    assert raw.x_test.shape == (4, 1, 28, 28)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_root(name: str, tmp_path: Path, cifar10_set, cifar100_set) -> None:
    (cifar10_set if name == "cifar10" else cifar100_set)(tmp_path / FOLDER[name])
    raw = load_dataset(name, data_root=tmp_path)
    assert raw.name == name and raw.x_train.shape[1:] == (3, 32, 32)


def test_download_failure_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(root: str, train: bool = True, download: bool = False) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    words = r"mnist: download into .* failed \(RuntimeError: Error"
    with pytest.raises(DataError, match=words) as err:
        load_dataset("mnist", data_root=tmp_path, download=True)
    assert "\n" not in str(err.value)


def test_download_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idx_set) -> None:
    calls = []

    def fake_fetch(root: str, train: bool = True, download: bool = False) -> None:
        calls.append((root, download))
        idx_set(Path(root) / "FashionMNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fetch)
    raw = load_dataset("fashion-mnist", data_root=tmp_path, download=True)
    assert calls == [(str(tmp_path), True)] and raw.x_train.shape == (6, 1, 28, 28)
    load_dataset("fashion-mnist", data_root=tmp_path, download=True)  # present: no second fetch
    assert len(calls) == 1


def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    system = Path("/usr/share/datasets/fashion-mnist")
    if not (system / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("not installed: apt-get install dataset-fashion-mnist")
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST", system)
    raw = load_dataset("fashion-mnist", data_root=tmp_path)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert raw.n_classes == 10
    assert torch.bincount(raw.y_train).tolist() == [6000] * 10
    assert torch.bincount(raw.y_test).tolist() == [1000] * 10
