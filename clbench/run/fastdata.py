"""The in-memory data path: Avalanche strategies fed by batched tensor indexing.

    strategy = Naive(model, opt, plugins=[..., FastDataPlugin(bridge, seed=0)])

Avalanche builds its loaders over ``AvalancheDataset`` objects and fetches one sample at a
time; for in-memory tensors that per-sample work dominates a small model's step. Every
experience dataset that :mod:`clbench.run.bridge` makes carries a ``sample_id`` data
attribute (a row of the stream's store), and Avalanche keeps that attribute through subsets,
concatenations and replay buffers. So whatever loader a strategy or plugin built, this plugin
(registered last) replaces it with one that has the same *batching semantics* — the same
datasets, batch sizes, shuffling, termination and oversampling rules as Avalanche's
``MultiDatasetDataLoader`` — but gathers each batch with one tensor index per dataset.

It covers the plain training loader, Avalanche's task-balanced and replay loaders
(``ReplayPlugin``, ``GDumb``, ``Cumulative``, ``JointTraining``), DER's replay iterator
(with its stored logits), and the evaluation loader.

A method that reads rows of the current experience itself (the SAE methods fit their SAE and
build their masks that way) calls :func:`experience_rows`: the fast path when this plugin is in
the strategy, a plain ``DataLoader`` in any other Avalanche script.

    >>> rows = sample_rows(len(strategy.experience.dataset), max_samples=2000, seed=7)
    >>> x, y, t = experience_rows(strategy, rows)        # CPU tensors, in ``rows`` order
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader, RandomSampler

from clbench.run.bridge import Bridge


@dataclass
class Part:
    """One dataset of a batched loader, already gathered into tensors."""

    tensors: list[torch.Tensor]  # [x, y, t, *extra], aligned on dim 0
    batch_size: int

    def __len__(self) -> int:
        return len(self.tensors[0])


class FastLoader:
    """Iterates mini-batches ``[x, y, t, *extra]`` over one or more :class:`Part` objects.

    Semantics follow Avalanche's ``MultiDatasetSampler``: each step takes the next batch of the
    terminating part first, then of every other part; the epoch ends when the terminating part
    runs out; another part that runs out is restarted (fresh permutation) when
    ``oversample`` is true and dropped otherwise. Batches of all parts are concatenated.
    """

    def __init__(self, parts: Sequence[Part], shuffle: bool, generator: torch.Generator | None,
                 termination: int = 0, oversample: bool = False, drop_last: bool = False,
                 cycle: bool = False) -> None:
        self.parts = [p for p in parts]
        self.shuffle, self.g, self.termination = shuffle, generator, termination
        self.oversample, self.drop_last, self.cycle = oversample, drop_last, cycle

    def _batches(self, part: Part) -> list[torch.Tensor | slice]:
        n = len(part)
        if not self.shuffle:  # sequential: slices are views, no copy
            return [slice(i, min(i + part.batch_size, n)) for i in range(0, n, part.batch_size)
                    if not (self.drop_last and i + part.batch_size > n)]
        order = torch.randperm(n, generator=self.g)
        chunks = list(order.split(part.batch_size))
        if self.drop_last and chunks and len(chunks[-1]) < part.batch_size:
            chunks.pop()
        return chunks

    def __len__(self) -> int:
        p = self.parts[self.termination]
        full, rest = divmod(len(p), p.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        if self.cycle:  # DER-style infinite replay iterator over one part
            while True:
                for b in self._batches(self.parts[0]):
                    yield [t[b] for t in self.parts[0].tensors]
        queues: list[Iterator[torch.Tensor | slice] | None] = [iter(self._batches(p)) for p in self.parts]
        order = [self.termination] + [i for i in range(len(self.parts)) if i != self.termination]
        while True:
            picked: dict[int, torch.Tensor | slice] = {}
            for i in order:
                q = queues[i]
                if q is None:
                    continue
                b = next(q, None)
                if b is None and i != self.termination and self.oversample:
                    queues[i] = iter(self._batches(self.parts[i]))
                    b = next(queues[i], None)
                if b is None:
                    if i == self.termination:
                        return
                    queues[i] = None
                    continue
                picked[i] = b
            if len(picked) == 1:
                (i, b), = picked.items()
                yield [t[b] for t in self.parts[i].tensors]
                continue
            fields = len(self.parts[0].tensors)
            yield [torch.cat([self.parts[i].tensors[f][picked[i]] for i in sorted(picked)])
                   for f in range(fields)]


class FastDataPlugin(SupervisedPlugin):
    """Replaces the loaders a strategy built with :class:`FastLoader` equivalents.

    Must be the last plugin before the evaluator so that it sees what ``ReplayPlugin`` and
    friends installed in ``before_training_exp``. Shuffling draws from a generator seeded by
    ``seed``, so a run is reproducible.
    """

    def __init__(self, bridge: Bridge, seed: int) -> None:
        super().__init__()
        self.bridge = bridge
        self.g = torch.Generator().manual_seed(seed)

    def before_training_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        strategy.dataloader = self.convert(strategy.dataloader, train=True)
        replay = getattr(strategy, "replay_loader", None)  # DER keeps its own iterator
        if replay is not None and getattr(strategy, "storage_policy", None) is not None:
            buffer = strategy.storage_policy.buffer
            part = Part(self.bridge.gather(buffer, extra=("logits",)), strategy.batch_size_mem)
            strategy.replay_loader = iter(FastLoader([part], shuffle=True, generator=self.g,
                                                     drop_last=True, cycle=True))

    def before_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        strategy.dataloader = self.convert(strategy.dataloader, train=False)

    def convert(self, loader: object, train: bool) -> FastLoader:
        """A :class:`FastLoader` with the batching semantics of Avalanche ``loader``."""
        if isinstance(loader, FastLoader):
            return loader
        if isinstance(loader, MultiDatasetDataLoader):
            parts = [Part(self.bridge.gather(d), bs)
                     for d, bs in zip(loader.datasets, loader.batch_sizes)]
            kw = loader.loader_kwargs
            return FastLoader(parts, shuffle=bool(kw.get("shuffle", train)), generator=self.g,
                              termination=int(loader.termination_dataset),
                              oversample=bool(loader.oversample_small_datasets),
                              drop_last=bool(kw.get("drop_last", False)))
        if isinstance(loader, DataLoader):
            bs = loader.batch_size or 1
            return FastLoader([Part(self.bridge.gather(loader.dataset), bs)],
                              shuffle=isinstance(loader.sampler, RandomSampler), generator=self.g,
                              drop_last=bool(loader.drop_last))
        raise TypeError(f"FastDataPlugin cannot convert a {type(loader).__name__}")


# ------------------------------------------------------------------ rows of an experience

#: batch size of the DataLoader fallback of :func:`experience_rows`
READ_BATCH = 256


def sample_rows(n: int, max_samples: int, seed: int) -> Tensor:
    """``randperm(n)[:max_samples]`` (generator seeded ``seed``) if ``n > max_samples``, else
    ``arange(n)``: the positions of the rows an SAE method reads."""
    if n > max_samples:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples]
    return torch.arange(n)


def fast_bridge(strategy: Any) -> Bridge | None:
    """The :class:`~clbench.run.bridge.Bridge` of the strategy's :class:`FastDataPlugin`
    (clbench's in-memory data path), or None when the strategy has none (a plain Avalanche
    script)."""
    return next((p.bridge for p in strategy.plugins if isinstance(p, FastDataPlugin)), None)


def dataset_rows(strategy: Any, ds: Any, rows: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, y, t)`` of positions ``rows`` (default: all) of the Avalanche dataset ``ds``, in
    that order, on the CPU.

    When the strategy has a :class:`FastDataPlugin` and the dataset came from its
    :class:`~clbench.run.bridge.Bridge` (it has ``sample_id``), the rows are one tensor index
    into ``Bridge.gather(dataset)``; otherwise a plain ``DataLoader`` over ``dataset.subset(rows)``
    reads them, so any Avalanche benchmark works. Both give the same rows in the same order.
    Reading never draws from the global RNG (the loader's base seed and any random transform
    run under a forked RNG)."""
    rows = torch.arange(len(ds)) if rows is None else rows
    bridge = fast_bridge(strategy)
    if bridge is not None and hasattr(ds, "sample_id"):   # a dataset made by the Bridge
        x, y, t = bridge.gather(ds)
        return x[rows], y[rows], t[rows]
    # the loader draws its base seed (and a random transform draws) from the global RNG
    with torch.random.fork_rng(devices=[]):
        loader = DataLoader(ds.subset(rows.tolist()), batch_size=READ_BATCH,
                            collate_fn=getattr(ds, "collate_fn", None))
        batches = list(loader)
    if not batches:
        raise ValueError("dataset_rows: no rows to read (empty dataset or rows)")
    x, y, t = (torch.cat([b[i] for b in batches]) for i in (0, 1, -1))
    return x, y, t


def experience_rows(strategy: Any, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, y, t)`` of positions ``rows`` of ``strategy.experience.dataset`` (the current
    experience's own training data), in that order, on the CPU (:func:`dataset_rows`)."""
    return dataset_rows(strategy, strategy.experience.dataset, rows)
