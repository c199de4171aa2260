"""Planted sparse features: data whose true dictionary the tests know.

    x = planted_codes(n, m, k, seed) @ unit_dictionary(d, m, seed).T     # [n, d]
"""
from __future__ import annotations

import torch
from torch import Tensor


def planted_codes(n: int, m: int, k: int, seed: int) -> Tensor:
    """``[n, m]`` codes with exactly ``k`` non-zeros a row, values uniform in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n, m, generator=g).argsort(dim=1)[:, :k]
    return torch.zeros(n, m).scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)


def unit_dictionary(d: int, m: int, seed: int) -> Tensor:
    """``[d, m]`` with random unit-norm columns."""
    w = torch.randn(d, m, generator=torch.Generator().manual_seed(seed))
    return w / w.norm(dim=0)


def max_cosines(true_dirs: Tensor, learned_rows: Tensor) -> tuple[Tensor, Tensor]:
    """For each true direction (a column of ``[d, m_true]``), the best cosine with a learned
    direction (a row of ``[m, d]``) and that row's index: two ``[m_true]`` tensors."""
    t = true_dirs / true_dirs.norm(dim=0)
    rows = learned_rows / learned_rows.norm(dim=1, keepdim=True)
    return (rows @ t).max(dim=0)
