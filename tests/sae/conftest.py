"""Fixtures for the SAE tests: single-threaded torch and a planted-feature data set."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch
from torch import Tensor

from tests.sae.planted import planted_codes, unit_dictionary


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These tests run many tiny ops; on a busy 2-core box two OpenMP threads are ~50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def planted() -> tuple[Tensor, Tensor]:
    """``(x [8192, 32], D [32, 64])``: ``x = codes @ D^T``, unit columns, 4-sparse codes."""
    dictionary = unit_dictionary(32, 64, seed=0)
    return planted_codes(8192, 64, 4, seed=1) @ dictionary.T, dictionary
