"""The in-memory loaders reproduce the batching of the Avalanche loaders they replace."""
from __future__ import annotations

import torch
from avalanche.benchmarks.utils.data_loader import ReplayDataLoader, TaskBalancedDataLoader
from torch.utils.data import DataLoader

from clbench.run.bridge import Bridge
from clbench.run.fastdata import FastDataPlugin, FastLoader
from clbench.streams import Stream


def _ids(bridge: Bridge, ds) -> set[int]:  # noqa: ANN001
    return set(int(i) for i in ds.sample_id)


def test_gather_returns_the_rows_avalanche_returns(digits_stream: Stream) -> None:
    bridge = Bridge(digits_stream)
    ds = bridge.experience_dataset(2, "train").concat(bridge.experience_dataset(0, "test"))
    x, y, t = bridge.gather(ds)
    for i in (0, 5, len(ds) - 1):
        xi, yi, ti = ds[i]
        assert torch.equal(x[i], xi) and int(y[i]) == int(yi) and int(t[i]) == int(ti)


def test_plain_loader_same_epoch_content(digits_stream: Stream) -> None:
    bridge = Bridge(digits_stream)
    ds = bridge.experience_dataset(1, "train")
    stock = TaskBalancedDataLoader(ds, oversample_small_groups=True, batch_size=32, shuffle=True)
    fast = FastDataPlugin(bridge, seed=0).convert(stock, train=True)
    stock_batches = list(stock)
    fast_batches = list(fast)
    assert len(fast_batches) == len(stock_batches) == len(fast)
    assert [len(b[0]) for b in fast_batches] == [len(b[0]) for b in stock_batches]
    xs = torch.cat([b[0] for b in fast_batches])
    assert sorted(torch.cat([b[1] for b in fast_batches]).tolist()) == sorted(
        torch.cat([b[1] for b in stock_batches]).tolist())
    assert len(xs) == len(ds)


def test_replay_loader_same_composition(digits_stream: Stream) -> None:
    bridge = Bridge(digits_stream)
    data = bridge.experience_dataset(3, "train")
    memory = bridge.experience_dataset(0, "train").subset(range(50))
    stock = ReplayDataLoader(data, memory, batch_size=16, batch_size_mem=16, shuffle=True)
    fast = FastDataPlugin(bridge, seed=0).convert(stock, train=True)
    sb, fb = list(stock), list(fast)
    assert len(sb) == len(fb)
    assert [len(b[0]) for b in sb] == [len(b[0]) for b in fb]
    # memory rows (classes of experience 0) appear exactly as often as in the stock loader
    mem_classes = torch.tensor(digits_stream.classes_per_exp[0])
    count = lambda bs: sum(int(torch.isin(b[1], mem_classes).sum()) for b in bs)  # noqa: E731
    assert count(sb) == count(fb) == 50


def test_eval_loader_keeps_order(digits_stream: Stream) -> None:
    bridge = Bridge(digits_stream)
    ds = bridge.experience_dataset(4, "test")
    fast = FastDataPlugin(bridge, seed=0).convert(DataLoader(ds, batch_size=64), train=False)
    y = torch.cat([b[1] for b in fast])
    assert torch.equal(y, digits_stream.y_test[digits_stream.test_idx[4]])


def test_oversampling_restarts_small_parts() -> None:
    a = [torch.arange(10).float(), torch.arange(10), torch.zeros(10, dtype=torch.long)]
    b = [torch.arange(100, 103).float(), torch.arange(100, 103), torch.zeros(3, dtype=torch.long)]
    from clbench.run.fastdata import Part
    g = torch.Generator().manual_seed(0)
    over = list(FastLoader([Part(a, 2), Part(b, 2)], shuffle=True, generator=g, oversample=True))
    no = list(FastLoader([Part(a, 2), Part(b, 2)], shuffle=True, generator=g, oversample=False))
    assert len(over) == len(no) == 5
    assert all(len(x[1]) == 4 or len(x[1]) == 3 for x in over)  # b restarts (last b batch has 1)
    assert sum(int((x[1] >= 100).sum()) for x in no) == 3      # b is used once, then dropped
