"""Where a result came from: versions, commit, host, time, and the settings behind determinism.

    >>> provenance(seed=0)["torch"]
    '2.15.0+cu132'
"""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from clbench.version import __version__


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """HEAD of the checkout clbench is imported from (with ``+dirty`` if it has changes)."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def determinism_settings() -> dict[str, Any]:
    """Settings that make CPU runs bit-identical for a config and seed: with all of these (and
    ``provenance``'s torch/numpy versions) equal, two runs give the same accuracy matrix bit for
    bit. The kernel set (``cpu_capability``: AVX2, AVX512, ...) and the BLAS/oneDNN backends
    change the floating-point summation order, so they are recorded too."""
    return {"torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
            "mkl_available": torch.backends.mkl.is_available(),
            "numpy": _version("numpy"),
            "device": "cpu", "data_loader": "clbench in-memory FastLoader, seeded generator"}


def provenance(seed: int) -> dict[str, Any]:
    return {
        "clbench_version": __version__, "git_commit": git_commit(),
        "torch": torch.__version__, "avalanche": _version("avalanche-lib"),
        "timm": _version("timm"), "python": platform.python_version(),
        "host": platform.node(), "platform": platform.platform(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
    }
