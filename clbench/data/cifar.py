"""CIFAR-10 / CIFAR-100 in the "python version" pickle layout, read without running code.

    >>> from pathlib import Path
    >>> from clbench.data.cifar import load_cifar10
    >>> raw = load_cifar10(Path("~/.cache/clbench/data/cifar-10-batches-py").expanduser())
    >>> raw.x_train.shape, raw.n_classes
    (torch.Size([50000, 3, 32, 32]), 10)

Layout (the files torchvision downloads and extracts):

    cifar-10-batches-py/data_batch_1 .. data_batch_5   10000 images each (train)
    cifar-10-batches-py/test_batch                      10000 images (test)
    cifar-100-python/train                              50000 images
    cifar-100-python/test                               10000 images

Each file is a (Python 2) pickle of a dict. ``data`` is a uint8 array ``[N, 3072]``: per row
1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major order, so
``data.reshape(N, 3, 32, 32)`` is channels-first. Labels are a list of N ints under
``labels`` (CIFAR-10, 0..9) or ``fine_labels`` (CIFAR-100, 0..99).

Pickles can call any importable function while loading. :class:`SafeUnpickler` resolves only
the few numpy globals that rebuild an array (and ``_codecs.encode`` restricted to latin-1, which
protocol-2 pickles written by Python 3 use for ``bytes``); any other global is refused.
"""
from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clbench.data.base import RawData, sha256_of, standardize
from clbench.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)

_FIX = "re-download it or delete it"


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1", errors)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED``; others raise ``DataError``."""

    def __init__(self, file: io.BytesIO, source: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source}: pickle refers to {module}.{name}, which a CIFAR file never does; "
                f"refusing to load it, {_FIX}"
            ) from None


def load_pickle(path: Path) -> tuple[dict[str, Any], bytes]:
    """The dict stored in ``path`` (keys as ``str``) and the file's bytes."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check its permissions") from None
    try:
        obj = SafeUnpickler(io.BytesIO(blob), path).load()
    except DataError:
        raise
    except Exception as e:  # truncated or garbled pickles fail in many ways
        raise DataError(f"{path}: unreadable pickle ({type(e).__name__}: {e}); {_FIX}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a dict; {_FIX}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}, blob


def read_batch(path: Path, label_key: str, n_classes: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Images ``[N, 3, 32, 32]`` uint8, labels ``[N]`` int64 and the raw bytes of one file."""
    d, blob = load_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: no {key!r} entry (has {sorted(map(str, d))}); {_FIX}")
    x, y = d["data"], np.asarray(d[label_key])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        shape = getattr(x, "shape", None)
        raise DataError(
            f"{path}: 'data' is {type(x).__name__} {shape}, expected uint8 [N, 3072]; {_FIX}"
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: {label_key!r} has shape {y.shape}, expected {len(x)} integers; {_FIX}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(f"{path}: {label_key!r} outside 0..{n_classes - 1}; {_FIX}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64), blob


def load_cifar_folder(
    name: str,
    folder: Path,
    train: tuple[str, ...],
    test: tuple[str, ...],
    label_key: str,
    n_classes: int,
) -> RawData:
    """Concatenate the ``train`` and ``test`` files of ``folder`` into a :class:`RawData`.
    The fingerprint is the sha256 of the files' bytes, train files first."""
    xtr, ytr, btr = _read_split(folder, train, label_key, n_classes)
    xte, yte, bte = _read_split(folder, test, label_key, n_classes)
    xtr, xte = standardize(xtr, xte)
    return RawData(name, xtr, ytr, xte, yte, n_classes, sha256_of(*btr, *bte))


def _read_split(
    folder: Path, files: tuple[str, ...], label_key: str, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, list[bytes]]:
    parts = [read_batch(folder / f, label_key, n_classes) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y), [p[2] for p in parts]


def load_cifar10(folder: Path) -> RawData:
    """CIFAR-10 from ``cifar-10-batches-py/``: 50000 train / 10000 test, 10 classes."""
    return load_cifar_folder("cifar10", folder, CIFAR10_TRAIN, CIFAR10_TEST, "labels", 10)


def load_cifar100(folder: Path) -> RawData:
    """CIFAR-100 from ``cifar-100-python/``: 50000 train / 10000 test, 100 fine classes."""
    return load_cifar_folder("cifar100", folder, CIFAR100_TRAIN, CIFAR100_TEST, "fine_labels", 100)

