"""Frozen-prefix states kept on disk, so that separate processes compute each row once.

A text run's frozen prefix (blocks ``0 .. train_start-1`` of the language model) is a fixed
function of an example's tokens. :class:`~clbench.models.lm.PrefixCache` shares its states
between the runs of one process; this module carries them across processes: ``ci/tune.py``
starts a fresh process per trial, and a sweep split over several ``clbench run`` calls starts one
per call, each of which would otherwise spend ~8 minutes (text-v1, 4,200 rows, CPU) recomputing
the same states.

The file ``<cache>/prefix/<key>.pt`` (:func:`clbench.cache.cache_root`) holds every row's real
token ids and its states ``[n_real, d]``, concatenated. Its name hashes everything the states
depend on: the weights fingerprint, ``train_start``, device, dtype, the torch version and
:data:`STORE_VERSION` (the code that computes them). A row is computed the same way in every
process, up to the last float bits of a different batch or thread count, which the in-process
cache already allows. ``CLBENCH_PREFIX_STORE=0`` turns the store off.

    >>> store_name("sha256:ab", 28, "cpu", "torch.float32")[:7]
    'prefix-'
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor

from clbench.atomic import write_atomic
from clbench.cache import cache_root

#: bump when the prefix computation changes: older files are then never read
STORE_VERSION = "1"
#: the environment variable that turns the store off (value ``0``)
ENV_SWITCH = "CLBENCH_PREFIX_STORE"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def store_name(fingerprint: str, train_start: int, device: str, dtype: str) -> str:
    """The file name for the states of one (weights, first trained block, device, dtype)."""
    key = "\0".join([STORE_VERSION, torch.__version__, fingerprint, str(train_start), device,
                     dtype])
    return f"prefix-b{train_start}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def store_path(fingerprint: str, train_start: int, device: str, dtype: str) -> Path:
    return cache_root() / "prefix" / store_name(fingerprint, train_start, device, dtype)


def save(path: Path, states: dict[bytes, Tensor]) -> int:
    """Write ``states`` (row key = its real token ids as int64 bytes -> ``[n_real, d]``)
    atomically; the bytes written."""
    keys = list(states)
    blob = {"version": STORE_VERSION,
            "keys": [torch.frombuffer(bytearray(k), dtype=torch.int64) for k in keys],
            "states": torch.cat([states[k].detach().cpu() for k in keys]) if keys else None}
    write_atomic(path, lambda f: torch.save(blob, f))
    return path.stat().st_size


def load(path: Path, device: str | torch.device = "cpu") -> dict[bytes, Tensor]:
    """The states saved at ``path``; empty when there is no file or it cannot be read (a store
    is only a cache: a damaged one is recomputed and rewritten, never an error)."""
    if not path.is_file():
        return {}
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        if blob.get("version") != STORE_VERSION or blob["states"] is None:
            return {}
        out: dict[bytes, Tensor] = {}
        start = 0
        for ids in blob["keys"]:
            n = len(ids)
            out[ids.numpy().tobytes()] = blob["states"][start:start + n]
            start += n
        if start != len(blob["states"]):
            return {}
        return out
    except Exception:   # truncated or foreign file: recompute
        return {}


__all__ = ["ENV_SWITCH", "STORE_VERSION", "enabled", "load", "save", "store_name", "store_path"]
