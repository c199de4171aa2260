"""Named datasets and the one entry point that loads them.

    >>> from clbench.data import DATASETS, load_dataset
    >>> DATASETS.names()
    ['cifar10', 'cifar100', 'digits', 'fashion-mnist', 'mnist', 'mnist1d']
    >>> raw = load_dataset("fashion-mnist")  # found in /usr/share/datasets/ if installed
    >>> raw.x_train.shape, raw.n_classes
    (torch.Size([60000, 1, 28, 28]), 10)

``digits`` and ``mnist1d`` are embedded (no files). The others are read from the torchvision
layout under ``<root>`` (``data_root``, default :data:`DEFAULT_DATA_ROOT`), first folder that
holds every file wins:

    fashion-mnist  <root>/FashionMNIST/raw/, <root>/, /usr/share/datasets/fashion-mnist/
    mnist          <root>/MNIST/raw/, <root>/
    cifar10        <root>/cifar-10-batches-py/
    cifar100       <root>/cifar-100-python/

With ``download=True`` missing files are fetched by torchvision into ``<root>`` and then read by
this package's own readers. Nothing is cached on disk beyond the downloaded files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from clbench.data.base import DEFAULT_DATA_ROOT, RawData
from clbench.data.cifar import (
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR100_TEST,
    CIFAR100_TRAIN,
    load_cifar10,
    load_cifar100,
)
from clbench.data.embedded import load_digits, load_mnist1d
from clbench.data.idx import IDX_FILES, find_idx_files, load_idx_folder
from clbench.errors import DataError
from clbench.registry import Registry

__all__ = ["DATASETS", "DEFAULT_DATA_ROOT", "Loader", "RawData", "load_dataset"]

Loader = Callable[[Path, bool], RawData]
"""``loader(root, download) -> RawData``; embedded loaders ignore both arguments."""

DATASETS: Registry[Loader] = Registry("dataset")

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four ``.gz`` files."""


def load_dataset(name: str, data_root: Path | str | None = None, download: bool = False) -> RawData:
    """Load dataset ``name`` (see :data:`DATASETS`), normalised, as tensors.

    Raises :class:`DataError` (one line: what was looked for where, and the fix) when files are
    missing, malformed, or cannot be downloaded; an unknown name raises with a "did you mean".
    """
    loader = DATASETS.get(name).obj
    root = DEFAULT_DATA_ROOT if data_root is None else Path(data_root).expanduser()
    return loader(root, download)


DATASETS.add("digits", lambda root, download: load_digits(), embedded=True,
             description="scikit-learn 8x8 digits, 1437/360 split, 10 classes (bundled)")
DATASETS.add("mnist1d", lambda root, download: load_mnist1d(), embedded=True,
             description="MNIST-1D, 4000/1000 sequences of length 40, 10 classes (generated)")


def _file_dataset(
    name: str,
    description: str,
    folders: Callable[[Path], list[Path]],
    complete: Callable[[Path], bool],
    wanted: str,
    read: Callable[[Path], RawData],
    torchvision_class: str,
    extra_fix: str = "",
) -> None:
    """Register a dataset read from the first of ``folders(root)`` that is ``complete``;
    ``wanted`` names its files in messages, ``torchvision_class`` fetches them."""

    def load(root: Path, download: bool) -> RawData:
        candidates = folders(root)
        folder = next((f for f in candidates if complete(f)), None)
        if folder is None and download:
            _fetch(name, torchvision_class, root, candidates[0])
            folder = next((f for f in candidates if complete(f)), None)
            if folder is None:
                raise DataError(
                    f"{name}: the download into {root} finished but some of {wanted} are "
                    f"still missing from {candidates[0]}/; delete that folder and retry"
                )
        if folder is None:
            where = " or ".join(f"{f}/" for f in candidates)
            raise DataError(
                f"{name}: no {wanted} in {where}; put the files in {candidates[0]}/ "
                f"(torchvision layout) or pass --data-root DIR, or --download where a network "
                f"exists{extra_fix}"
            )
        return read(folder)

    DATASETS.add(name, load, description=description, embedded=False)


def _fetch(name: str, torchvision_class: str, root: Path, target: Path) -> None:
    """Let torchvision download ``name`` into ``root`` (only the files are used)."""
    import torchvision.datasets  # imported on use: only downloads need it

    cls = getattr(torchvision.datasets, torchvision_class)
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)  # one call fetches train and test files
    except Exception as e:  # network, HTTP, checksum and archive errors all end here
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise DataError(
            f"{name}: download into {root} failed ({reason}); check the network, or put the "
            f"files in {target}/ yourself"
        ) from None


_IDX_WANTED = ", ".join(f"{f}[.gz]" for f in IDX_FILES)

_file_dataset(
    "fashion-mnist",
    "Zalando Fashion-MNIST, 60000/10000 28x28 grey images, 10 classes",
    lambda root: [root / "FashionMNIST" / "raw", root, SYSTEM_FASHION_MNIST],
    lambda folder: find_idx_files(folder) is not None,
    _IDX_WANTED,
    lambda folder: load_idx_folder("fashion-mnist", folder),
    "FashionMNIST",
    extra_fix=", or apt-get install dataset-fashion-mnist",
)
_file_dataset(
    "mnist",
    "MNIST handwritten digits, 60000/10000 28x28 grey images, 10 classes",
    lambda root: [root / "MNIST" / "raw", root],
    lambda folder: find_idx_files(folder) is not None,
    _IDX_WANTED,
    lambda folder: load_idx_folder("mnist", folder),
    "MNIST",
)
_file_dataset(
    "cifar10",
    "CIFAR-10, 50000/10000 32x32 colour images, 10 classes",
    lambda root: [root / "cifar-10-batches-py"],
    lambda folder: all((folder / f).is_file() for f in CIFAR10_TRAIN + CIFAR10_TEST),
    ", ".join(CIFAR10_TRAIN + CIFAR10_TEST),
    load_cifar10,
    "CIFAR10",
)
_file_dataset(
    "cifar100",
    "CIFAR-100, 50000/10000 32x32 colour images, 100 fine classes",
    lambda root: [root / "cifar-100-python"],
    lambda folder: all((folder / f).is_file() for f in CIFAR100_TRAIN + CIFAR100_TEST),
    ", ".join(CIFAR100_TRAIN + CIFAR100_TEST),
    load_cifar100,
    "CIFAR100",
)
