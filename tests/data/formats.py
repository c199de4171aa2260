"""Writers for the real on-disk dataset formats (IDX, CIFAR pickles), used by the fixtures
in ``conftest.py`` and by tests that build corrupt files.

    >>> from tests.data.formats import write_idx
    >>> write_idx(Path("/tmp/labels.gz"), np.arange(3, dtype=np.uint8))  # gzip IDX, magic 0x801
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 6, 4


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000080<ndim>, big-endian int32 sizes, data."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX; gzip-compressed when ``path`` ends in ``.gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_pickle(path: Path, obj: object) -> Path:
    """Pickle ``obj`` to ``path`` with protocol 2."""
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)  # the protocol of the published CIFAR files
    return path


def cifar_batch(n: int, n_classes: int, label_key: str, seed: int) -> dict[str, object]:
    """One CIFAR batch dict laid out like the published files."""
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"batch {seed}",
        label_key: [int(v) for v in rng.integers(0, n_classes, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def py2_cifar_pickle(data: np.ndarray, labels: list[int], label_key: str) -> bytes:
    """The bytes Python 2's cPickle (protocol 2) writes for ``{'data': data, label_key: labels}``,
    as in the published CIFAR files: ``str`` as SHORT_BINSTRING/BINSTRING, the array rebuilt by
    ``numpy.core.multiarray._reconstruct`` with its bytes in the BUILD state."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def i(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    assert data.dtype == np.uint8 and data.ndim == 2
    dtype = b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|")
    dtype += b"NNN" + i(-1) + i(-1) + b"K\x00tb"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
    array += b"(K\x01" + i(data.shape[0]) + i(data.shape[1]) + b"\x86" + dtype + b"\x89"
    array += s(data.tobytes()) + b"tb"
    label_list = b"](" + b"".join(i(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(label_key.encode()) + label_list + b"u."
