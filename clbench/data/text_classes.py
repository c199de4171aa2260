"""Class ids of packed text rows, for the tasks of text-v1 that have a fixed label set.

    >>> classes = RowClasses.of(ts)                  # ts: a tokenized TextStream
    >>> classes.names[:2]                            # ['supersense:act', 'supersense:animal']
    >>> classes.lookup(ts.stream.x_train[:4])        # [4] long: a class id, or -1

Of text-v1's six tasks, two are classifications with one label set for every example
(:attr:`clbench.data.text_tasks.TextTask.choices` non-empty): ``supersense`` (8 WordNet noun
categories) and ``fortune-topic`` (6 topics). The others (three translations, definitions) are
multiple choice among per-example distractors: they have no classes, and a row of theirs gets
``-1``.

**Global ids.** The classification tasks' labels are numbered in stream order: task ``e``'s
label ``j`` is ``offset_e + j``, ``offset_e`` the number of labels of the classification tasks
before ``e`` (text-v1: supersense 0..7, fortune-topic 8..13), so rows of two tasks never share a
class.

**How a row's label is found.** A packed row's answer is its label's text, tokenized in context
(:func:`clbench.data.text_stream.encode_rows`). At construction each training and test row of a
classification task is paired with its example (rows are in example order), and the row's answer
ids (``y`` without ``-100``) are checked to name exactly one label of the task: two labels with the
same ids, or one row whose ids disagree with its example's label, is a :class:`ClbenchError`
(the tokenizer cannot tell the classes apart). Each row's class is then stored under the digest of
its token ids and mask (``x[:2]``), and :meth:`RowClasses.lookup` reads a mini-batch's rows by that
digest: a row is found only if it *is* one of the classification rows, so a replayed row of
another task, whose answer may spell a label ("animal" as a defined noun), never gets a class.
The same ids in two rows with different classes (never in text-v1) are marked ``-1``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from clbench.data.text_stream import IGNORE, TextStream
from clbench.errors import ClbenchError

#: the class id of a row with none (a task without a fixed label set, or an unknown row)
NO_CLASS = -1


def row_key(row: Tensor) -> bytes:
    """Digest of a packed row's token ids and attention mask (``row [>=2, T]``)."""
    return hashlib.blake2b(row[:2].to(torch.long).cpu().numpy().tobytes(), digest_size=16).digest()


def answer_ids(y: Tensor) -> tuple[int, ...]:
    """A packed row's answer token ids (``y [A]`` without the ``-100`` padding)."""
    return tuple(int(t) for t in y[y != IGNORE].tolist())


@dataclass
class RowClasses:
    """Class ids of packed rows (module docstring): ``names[c]`` is ``"<task>:<label>"``,
    ``tasks`` the classification tasks' stream indices, ``offsets[e]`` task ``e``'s first id."""

    names: list[str]
    tasks: list[int]
    offsets: dict[int, int]
    _by_row: dict[bytes, int]

    @property
    def n_classes(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, ts: TextStream) -> "RowClasses":
        """The classes of ``ts``'s classification tasks and every training and test row's class."""
        names: list[str] = []
        tasks: list[int] = []
        offsets: dict[int, int] = {}
        by_row: dict[bytes, int] = {}
        s = ts.stream
        for e, task in enumerate(ts.v1.tasks):
            if not task.choices:
                continue
            tasks.append(e)
            offsets[e] = len(names)
            names += [f"{task.name}:{c}" for c in task.choices]
            ids_of: dict[tuple[int, ...], int] = {}
            for x, y, idx, examples in ((s.x_train, s.y_train, s.train_idx[e], task.train),
                                        (s.x_test, s.y_test, s.test_idx[e], task.test)):
                if len(idx) != len(examples):
                    raise ClbenchError(f"task {task.name}: {len(idx)} rows for {len(examples)} "
                                       "examples; the stream is not this text-v1's")
                for i, ex in zip(idx.tolist(), examples):
                    label = task.choices.index(ex.answer)
                    ids = answer_ids(y[i])
                    if ids_of.setdefault(ids, label) != label:
                        raise ClbenchError(
                            f"task {task.name}: labels {task.choices[ids_of[ids]]!r} and "
                            f"{ex.answer!r} have the same answer tokens; their rows cannot be "
                            "told apart")
                    key, c = row_key(x[i]), offsets[e] + label
                    by_row[key] = c if by_row.get(key, c) == c else NO_CLASS
        return cls(names, tasks, offsets, by_row)

    def lookup(self, x: Tensor) -> Tensor:
        """``[B]`` long on ``x``'s device: each packed row's class id, :data:`NO_CLASS` for a row
        of a task without a fixed label set (or any row not in the stream)."""
        ids = [self._by_row.get(row_key(r), NO_CLASS) for r in x]
        return torch.tensor(ids, dtype=torch.long, device=x.device)

    def test_rows(self, ts: TextStream) -> tuple[Tensor, Tensor]:
        """Indices into ``x_test`` of the classification tasks' test rows and their classes."""
        idx = torch.cat([ts.stream.test_idx[e] for e in self.tasks]) if self.tasks else \
            torch.zeros(0, dtype=torch.long)
        return idx, self.lookup(ts.stream.x_test[idx])

    def train_rows(self, ts: TextStream) -> tuple[Tensor, Tensor]:
        """Indices into ``x_train`` of the classification tasks' training rows and their classes."""
        idx = torch.cat([ts.stream.train_idx[e] for e in self.tasks]) if self.tasks else \
            torch.zeros(0, dtype=torch.long)
        return idx, self.lookup(ts.stream.x_train[idx])
