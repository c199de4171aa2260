"""IDX files (the MNIST / Fashion-MNIST format), read straight into numpy arrays.

    >>> from pathlib import Path
    >>> from clbench.data.idx import load_idx_folder
    >>> raw = load_idx_folder("fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
    >>> raw.x_train.shape, raw.y_test.shape
    (torch.Size([60000, 1, 28, 28]), torch.Size([10000]))

Format (all integers big-endian):

    offset 0   int32 magic = 0x00000800 | ndim   (byte 2 = 0x08: unsigned bytes)
    offset 4   ndim x int32 sizes                 (images: N, 28, 28; labels: N)
    offset 4 + 4*ndim   prod(sizes) uint8 values, row-major

so ``0x00000803`` is an image file and ``0x00000801`` a label file, and a valid file is exactly
``4 + 4*ndim + prod(sizes)`` bytes long. A file may be gzip-compressed (``.gz``, or any file that
starts with the gzip bytes ``1f 8b``).
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from clbench.data.base import RawData, sha256_of, standardize
from clbench.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# The four files of an MNIST-style set, in the order they are read and fingerprinted.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_FIX = "re-download it or delete it"
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: Path) -> bytes:
    """The IDX bytes of ``path``, decompressed when the file is gzip."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check its permissions") from None
    if path.suffix != ".gz" and not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip data ({e}); {_FIX}") from None


def parse_idx(buf: bytes, magic: int, source: Path | str) -> np.ndarray:
    """The uint8 array held in IDX bytes ``buf`` whose header must carry ``magic``.

    The array is a read-only view of ``buf`` (no copy); ``source`` names the file in errors.
    """
    if len(buf) < 4:
        raise DataError(f"{source}: truncated IDX file ({len(buf)} bytes, no header); {_FIX}")
    found = int.from_bytes(buf[:4], "big")
    if found != magic:
        raise DataError(
            f"{source}: wrong IDX magic 0x{found:08x}, expected 0x{magic:08x}; "
            f"it is not an MNIST-style {'label' if magic == LABELS_MAGIC else 'image'} file, {_FIX}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{source}: truncated IDX header ({len(buf)} of {header} bytes); {_FIX}")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    want = header + math.prod(dims)  # Python ints: a forged header cannot overflow
    if len(buf) < want:
        raise DataError(
            f"{source}: truncated IDX file (header says {dims}, needs {want} bytes, "
            f"has {len(buf)}); {_FIX}"
        )
    if len(buf) > want:
        raise DataError(
            f"{source}: {len(buf) - want} unexpected bytes after the IDX data of shape {dims}; "
            f"{_FIX}"
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read and check one IDX file (plain or gzip)."""
    return parse_idx(read_idx_bytes(path), magic, path)


def find_idx_files(folder: Path) -> list[Path] | None:
    """The paths of :data:`IDX_FILES` in ``folder`` (plain preferred over ``.gz``), or ``None``
    if any of the four is missing."""
    found = []
    for stem in IDX_FILES:
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found.append(cand)
                break
        else:
            return None
    return found


def load_idx_folder(name: str, folder: Path, n_classes: int = 10) -> RawData:
    """Load an MNIST-style set from ``folder``; images become ``[N, 1, 28, 28]``.

    The fingerprint is the sha256 of the four decompressed files, so plain and ``.gz`` copies
    of the same data agree.
    """
    paths = find_idx_files(folder)
    if paths is None:
        raise DataError(f"{folder}: missing some of {', '.join(IDX_FILES)} (plain or .gz)")
    blobs = [read_idx_bytes(p) for p in paths]
    magics = (IMAGES_MAGIC, LABELS_MAGIC, IMAGES_MAGIC, LABELS_MAGIC)  # order of IDX_FILES
    xtr, ytr, xte, yte = (parse_idx(b, m, p) for b, m, p in zip(blobs, magics, paths))
    _check_pair(xtr, ytr, paths[0], paths[1], n_classes)
    _check_pair(xte, yte, paths[2], paths[3], n_classes)
    x_train, x_test = standardize(_images(xtr), _images(xte))
    return RawData(
        name=name,
        x_train=x_train,
        y_train=torch.from_numpy(ytr.astype(np.int64)),
        x_test=x_test,
        y_test=torch.from_numpy(yte.astype(np.int64)),
        n_classes=n_classes,
        fingerprint=sha256_of(*blobs),
    )


def _images(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.copy()).unsqueeze(1)  # copy: frombuffer views are read-only


def _check_pair(x: np.ndarray, y: np.ndarray, px: Path, py: Path, n_classes: int) -> None:
    if x.shape[1:] != (28, 28):
        raise DataError(f"{px}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28; {_FIX}")
    if len(x) != len(y):
        raise DataError(f"{py}: {len(y)} labels for {len(x)} images in {px.name}; {_FIX}")
    if len(y) and int(y.max()) >= n_classes:
        raise DataError(f"{py}: label {int(y.max())} out of range 0..{n_classes - 1}; {_FIX}")
