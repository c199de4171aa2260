"""Shared fixtures: small real streams built once per session."""
from __future__ import annotations

import pytest
import torch

from clbench.streams import Stream, build_stream


@pytest.fixture(scope="session", autouse=True)
def _fixed_threads() -> None:
    """One thread for the whole session: the determinism guarantee needs a fixed count, and on
    2 cores one thread per process avoids OpenMP spin-waiting against other processes."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_stream() -> Stream:
    return build_stream("split-digits", seed=0)


@pytest.fixture(scope="session")
def mnist1d_stream() -> Stream:
    return build_stream("split-mnist1d", seed=0)
