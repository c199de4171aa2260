"""The on-disk store of frozen-prefix states: round trip, keys, and damaged files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clbench.models import prefix_store


def _rows() -> dict[bytes, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for n in (3, 1, 5):
        ids = torch.randint(0, 100, (n,), generator=g, dtype=torch.int64)
        out[ids.numpy().tobytes()] = torch.randn(n, 4, generator=g)
    return out


def test_round_trip_keeps_every_row(tmp_path: Path) -> None:
    rows = _rows()
    path = tmp_path / "p.pt"
    assert prefix_store.save(path, rows) == path.stat().st_size > 0
    back = prefix_store.load(path)
    assert list(back) == list(rows)
    for k in rows:
        assert torch.equal(back[k], rows[k])


@pytest.mark.parametrize("damage", ["truncate", "foreign", "missing"])
def test_a_damaged_or_missing_store_reads_as_empty(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "p.pt"
    prefix_store.save(path, _rows())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "foreign":
        torch.save({"version": "0", "keys": [], "states": torch.zeros(1)}, path)
    else:
        path.unlink()
    assert prefix_store.load(path) == {}


def test_the_name_changes_with_everything_the_states_depend_on() -> None:
    base = ("sha256:ab", 28, "cpu", "torch.float32")
    names = {prefix_store.store_name(*base),
             prefix_store.store_name("sha256:cd", 28, "cpu", "torch.float32"),
             prefix_store.store_name("sha256:ab", 27, "cpu", "torch.float32"),
             prefix_store.store_name("sha256:ab", 28, "cuda:0", "torch.float32"),
             prefix_store.store_name("sha256:ab", 28, "cpu", "torch.float64")}
    assert len(names) == 5
    assert prefix_store.store_name(*base) == prefix_store.store_name(*base)
