"""Fixtures for the SAE tests: a planted-feature data set (tests/conftest.py sets one torch
thread for the whole session)."""
from __future__ import annotations

import pytest
from torch import Tensor

from tests.sae.planted import planted_codes, unit_dictionary


@pytest.fixture(scope="module")
def planted() -> tuple[Tensor, Tensor]:
    """``(x [8192, 32], D [32, 64])``: ``x = codes @ D^T``, unit columns, 4-sparse codes."""
    dictionary = unit_dictionary(32, 64, seed=0)
    return planted_codes(8192, 64, 4, seed=1) @ dictionary.T, dictionary
