"""A :class:`~clbench.streams.Stream` as an Avalanche benchmark, and back to tensors.

    >>> bridge = Bridge(build_stream("split-digits", seed=0))
    >>> bm = bridge.benchmark()            # Avalanche CLScenario: train_stream, test_stream
    >>> x, y, t = bridge.gather(bm.train_stream[0].dataset)   # the same rows, as tensors

Each experience dataset is a stock ``TaskAwareSupervisedClassificationDataset`` (so every
Avalanche strategy, storage policy and metric works on it unchanged) with one extra,
non-``getitem`` data attribute, ``sample_id``: the row of the stream's train store, or
``len(train store) + row`` of its test store. :meth:`Bridge.gather` turns any dataset derived
from these (subsets, concatenations, replay buffers) back into tensors with one index op.
"""
from __future__ import annotations

from typing import Sequence

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
    _make_taskaware_tensor_classification_dataset,
)
from avalanche.benchmarks.utils.data_attribute import DataAttribute

from clbench.streams import Stream


class Bridge:
    """Converts between a clbench :class:`Stream` and Avalanche datasets."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.n_train = len(stream.y_train)

    def experience_dataset(self, e: int, split: str) -> TaskAwareSupervisedClassificationDataset:
        """Experience ``e``'s ``"train"`` or ``"test"`` rows as an Avalanche dataset."""
        s = self.stream
        if split == "train":
            rows, x, y, offset = s.train_idx[e], s.x_train, s.y_train, 0
        else:
            rows, x, y, offset = s.test_idx[e], s.x_test, s.y_test, self.n_train
        base = _make_taskaware_tensor_classification_dataset(
            x[rows], y[rows], task_labels=s.task_labels[e])
        ids = DataAttribute((rows + offset).tolist(), "sample_id")
        return base.__class__([base], data_attributes=[ids])

    def benchmark(self):  # noqa: ANN201 (Avalanche's CLScenario)
        """An Avalanche scenario with ``train_stream`` and ``test_stream``, class timelines and
        task labels attached to the experiences."""
        n = self.stream.n_experiences
        bm = benchmark_from_datasets(
            train=[self.experience_dataset(e, "train") for e in range(n)],
            test=[self.experience_dataset(e, "test") for e in range(n)],
        )
        return with_task_labels(with_classes_timeline(bm))

    def gather(self, dataset, extra: Sequence[str] = ()) -> list[torch.Tensor]:  # noqa: ANN001
        """``[x, y, t, *extra]`` tensors of every element of ``dataset``, in dataset order.

        ``dataset`` must descend from this bridge's experience datasets (it has ``sample_id``).
        ``extra`` names further tensor data attributes (DER's ``logits``).
        """
        if not hasattr(dataset, "sample_id"):
            raise TypeError("dataset has no 'sample_id': it was not made by clbench's Bridge")
        ids = torch.as_tensor(list(dataset.sample_id), dtype=torch.long)
        s = self.stream
        is_test = ids >= self.n_train
        if bool(is_test.any()) and not bool(is_test.all()):
            x = torch.empty((len(ids), *s.x_train.shape[1:]), dtype=s.x_train.dtype)
            y = torch.empty(len(ids), dtype=torch.long)
            tr, te = ~is_test, is_test
            x[tr], y[tr] = s.x_train[ids[tr]], s.y_train[ids[tr]]
            x[te], y[te] = s.x_test[ids[te] - self.n_train], s.y_test[ids[te] - self.n_train]
        elif bool(is_test.all()) and len(ids):
            x, y = s.x_test[ids - self.n_train], s.y_test[ids - self.n_train]
        else:
            x, y = s.x_train[ids], s.y_train[ids]
        t = torch.as_tensor(list(dataset.targets_task_labels), dtype=torch.long)
        out = [x, y, t]
        for name in extra:
            vals = list(getattr(dataset, name))
            out.append(torch.stack([torch.as_tensor(v) for v in vals]) if vals
                       else torch.empty(0))
        return out
