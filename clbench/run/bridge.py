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
from torch.utils.data import TensorDataset
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
    _init_targets,
    _init_task_labels,
    _make_taskaware_tensor_classification_dataset,
)
from avalanche.benchmarks.utils.data_attribute import DataAttribute
from avalanche.benchmarks.utils.flat_data import ConstantSequence, FlatData

from clbench.streams import Stream


def _take(store: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``store[ids]``, as a zero-copy slice when ``ids`` is one increasing run of rows."""
    n = len(ids)
    if n and int(ids[-1]) - int(ids[0]) == n - 1 and bool((ids[1:] - ids[:-1] == 1).all()):
        return store[int(ids[0]): int(ids[0]) + n]
    return store[ids]


def flat_values(flat) -> torch.Tensor:  # noqa: ANN001
    """The int64 values of an Avalanche ``FlatData`` (a data attribute's storage) in order.

    A ``FlatData`` is a list of component sequences plus optional indices into their
    concatenation; we concatenate the components as tensors and index once, instead of reading
    element by element (which costs ~2 us per element in Avalanche).
    """
    if isinstance(flat, torch.Tensor):
        return flat.long().reshape(-1)
    if isinstance(flat, ConstantSequence):
        return torch.full((len(flat),), int(flat._constant_value), dtype=torch.long)
    if isinstance(flat, FlatData):
        parts = [flat_values(d) for d in flat._datasets]
        cat = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
        idx = flat._indices
        return cat if idx is None else cat[torch.as_tensor(list(idx), dtype=torch.long)]
    return torch.as_tensor(list(flat), dtype=torch.long)


class _TensorRows(TensorDataset):
    """A tensor dataset whose ``y`` stays a tensor: Avalanche's own calls ``.item()`` on it."""


def _tensor_rows_dataset(x: torch.Tensor, y: torch.Tensor, targets: list[int],
                         task_label: int) -> TaskAwareSupervisedClassificationDataset:
    """An Avalanche dataset of ``(x[i], y[i], t)`` with ``y`` rows and class ``targets``
    (what class-balanced memories group by), as Avalanche's tensor factory builds it."""
    rows = _TensorRows(x, y)
    return TaskAwareSupervisedClassificationDataset(
        [rows], data_attributes=[_init_targets(rows, targets),
                                 _init_task_labels(rows, task_label)])


class Bridge:
    """Converts between a clbench :class:`Stream` and Avalanche datasets."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.n_train = len(stream.y_train)
        # id(sample_id attribute) -> (attribute, ids, task labels). Avalanche's .train()/.eval()
        # views share their attribute objects, so each dataset's ids are read only once; the
        # attribute is held so its id cannot be reused while cached.
        self._ids: dict[int, tuple[object, torch.Tensor, torch.Tensor]] = {}

    def ids_and_tasks(self, dataset) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """Store rows (``sample_id``) and task labels of ``dataset``, read once per dataset."""
        attr = dataset.sample_id
        hit = self._ids.get(id(attr))
        if hit is None or hit[0] is not attr:
            if len(self._ids) > 256:
                self._ids.clear()
            ids = flat_values(attr.data)
            t = flat_values(dataset.targets_task_labels.data)
            hit = self._ids[id(attr)] = (attr, ids, t)
        return hit[1], hit[2]

    def experience_dataset(self, e: int, split: str) -> TaskAwareSupervisedClassificationDataset:
        """Experience ``e``'s ``"train"`` or ``"test"`` rows as an Avalanche dataset."""
        s = self.stream
        if split == "train":
            rows, x, y, groups, offset = s.train_idx[e], s.x_train, s.y_train, s.targets_train, 0
        else:
            rows, x, y, groups, offset = (s.test_idx[e], s.x_test, s.y_test, s.targets_test,
                                          self.n_train)
        if y.dim() == 1:
            base = _make_taskaware_tensor_classification_dataset(  # views of the store, no copy
                _take(x, rows), _take(y, rows), task_labels=s.task_labels[e])
        else:   # y a row per sample (text-v1's answer tokens); targets: the group labels
            base = _tensor_rows_dataset(_take(x, rows), _take(y, rows),
                                        _take(groups, rows).tolist(), s.task_labels[e])
        ids = DataAttribute((rows + offset).tolist(), "sample_id")
        ds = base.__class__([base], data_attributes=[ids])
        self._ids[id(ds.sample_id)] = (ds.sample_id, rows + offset,
                                       torch.full((len(rows),), s.task_labels[e], dtype=torch.long))
        return ds

    def benchmark(self):  # noqa: ANN201 (Avalanche's CLScenario)
        """An Avalanche scenario with ``train_stream`` and ``test_stream``, class timelines and
        task labels attached to the experiences."""
        n = self.stream.n_experiences
        bm = with_task_labels(benchmark_from_datasets(
            train=[self.experience_dataset(e, "train") for e in range(n)],
            test=[self.experience_dataset(e, "test") for e in range(n)],
        ))
        # the class timeline Avalanche's with_classes_timeline would compute, from the stream
        classes = [set(c) for c in self.stream.classes_per_exp]
        every = set().union(*classes)
        for split in (bm.train_stream, bm.test_stream):
            for e, exp in enumerate(split):
                seen = set().union(*classes[: e + 1])
                exp.classes_in_this_experience = sorted(classes[e])
                exp.previous_classes = set().union(*classes[:e])
                exp.classes_seen_so_far = seen
                exp.future_classes = every - seen
        return bm

    def gather(self, dataset, extra: Sequence[str] = ()) -> list[torch.Tensor]:  # noqa: ANN001
        """``[x, y, t, *extra]`` tensors of every element of ``dataset``, in dataset order.

        ``dataset`` must descend from this bridge's experience datasets (it has ``sample_id``).
        ``extra`` names further tensor data attributes (DER's ``logits``).
        """
        if not hasattr(dataset, "sample_id"):
            raise TypeError("dataset has no 'sample_id': it was not made by clbench's Bridge")
        ids, t = self.ids_and_tasks(dataset)
        s = self.stream
        is_test = ids >= self.n_train
        if bool(is_test.any()) and not bool(is_test.all()):
            x = torch.empty((len(ids), *s.x_train.shape[1:]), dtype=s.x_train.dtype)
            y = torch.empty((len(ids), *s.y_train.shape[1:]), dtype=s.y_train.dtype)
            tr, te = ~is_test, is_test
            x[tr], y[tr] = s.x_train[ids[tr]], s.y_train[ids[tr]]
            x[te], y[te] = s.x_test[ids[te] - self.n_train], s.y_test[ids[te] - self.n_train]
        elif bool(is_test.all()) and len(ids):
            x, y = _take(s.x_test, ids - self.n_train), _take(s.y_test, ids - self.n_train)
        else:
            x, y = _take(s.x_train, ids), _take(s.y_train, ids)
        out = [x, y, t]
        for name in extra:
            vals = list(getattr(dataset, name))
            out.append(torch.stack([torch.as_tensor(v) for v in vals]) if vals
                       else torch.empty(0))
        return out
