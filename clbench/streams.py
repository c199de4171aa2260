"""Registered, versioned continual-learning streams built from in-memory tensors.

    >>> from clbench.streams import build_stream, STREAMS
    >>> s = build_stream("split-digits", seed=0)
    >>> s.n_experiences, s.classes_per_exp[0], s.fingerprint[:12]
    (5, [4, 6], '...')

A stream holds one *store* of training rows and one of test rows; experience ``e`` is a
contiguous range of rows in each store (so reading an experience is a zero-copy slice). Split
streams (class-incremental, or task-incremental with ``task_incremental``) regroup the dataset's
rows by experience; permuted and rotated streams (domain-incremental) store one transformed copy
per experience. The class order (split), the permutations (permuted) or the angles (rotated) are
drawn from ``numpy.random.default_rng(seed)``, so a seed fixes them. A stream registered with
``task_incremental=True`` (``split-fmnist-til``) is always task-incremental: one head per
experience, task labels given at test time. ``version`` changes whenever the construction changes; ``fingerprint`` hashes
the raw data read plus the construction, so results from different data never mix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from clbench.data import load_dataset
from clbench.data.base import RawData, sha256_of
from clbench.data.class_names import CLASS_NAMES
from clbench.errors import ClbenchError
from clbench.registry import Registry

Scenario = Literal["class-il", "task-il", "domain-il", "instruction-il"]
"""``instruction-il``: text tasks for one LM, the task named by the prompt only (no task label)."""


@dataclass(frozen=True)
class Stream:
    """A stream of experiences over two row stores.

    ``train_idx[e]`` / ``test_idx[e]``: int64 row indices of experience ``e`` into
    ``x_train``/``y_train`` and ``x_test``/``y_test``. ``classes_per_exp[e]``: the classes that
    experience ``e`` contains. ``task_labels[e]``: ``e`` for task-incremental streams, else 0.
    """

    name: str
    version: str
    scenario: Scenario
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_idx: list[torch.Tensor]
    test_idx: list[torch.Tensor]
    classes_per_exp: list[list[int]]
    n_classes: int
    fingerprint: str
    seed: int
    #: per-row group labels Avalanche's datasets expose as ``targets`` (what class-balanced
    #: memories balance) when ``y`` is not one class per row (text-v1: ``y`` holds answer
    #: tokens, the groups are task numbers); None: ``y`` itself
    targets_train: torch.Tensor | None = None
    targets_test: torch.Tensor | None = None

    @property
    def n_experiences(self) -> int:
        return len(self.train_idx)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def task_labels(self) -> list[int]:
        return list(range(self.n_experiences)) if self.scenario == "task-il" else [0] * self.n_experiences

    @property
    def class_names(self) -> list[str]:
        """``names[c]``: label ``c``'s name (:mod:`clbench.data.class_names`, by the registered
        stream's dataset), or ``"class c"`` where the dataset has no names listed."""
        spec = STREAMS.get(self.name).obj if self.name in STREAMS else None
        names = CLASS_NAMES.get(spec.dataset, ()) if spec is not None else ()
        if len(names) == self.n_classes:
            return list(names)
        return [f"class {c}" for c in range(self.n_classes)]

    def nbytes_per_sample(self) -> int:
        """Bytes of one stored input plus its label, as a replay buffer would keep it."""
        return int(self.x_train[0].numel() * self.x_train.element_size() + 8)


def holdout(stream: Stream, fraction: float, seed: int) -> Stream:
    """The same stream with a validation split in place of its test set.

    A seeded ``fraction`` of each experience's training rows becomes that experience's "test"
    rows and is never trained on; the rest stay training rows. Hyperparameters are chosen on
    such a stream, so the real test set is touched only by the final runs. The two splits are
    copied into new stores laid out experience by experience (so reading an experience stays a
    zero-copy slice); the original stores can be freed once the caller drops ``stream``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(10_007 * seed + 17)
    keep, val = [], []
    for rows in stream.train_idx:
        perm = rows[torch.randperm(len(rows), generator=gen)]
        n_val = max(1, int(round(fraction * len(rows))))
        val.append(perm[:n_val].sort().values)
        keep.append(perm[n_val:].sort().values)

    def layout(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        rows = torch.cat(parts)
        starts = np.cumsum([0] + [len(p) for p in parts])
        idx = [torch.arange(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        return stream.x_train[rows], stream.y_train[rows], idx

    x_tr, y_tr, train_idx = layout(keep)
    x_va, y_va, val_idx = layout(val)
    fp = sha256_of(f"{stream.fingerprint}|holdout={fraction}|seed={seed}".encode())
    return Stream(stream.name, stream.version, stream.scenario, x_tr, y_tr, x_va, y_va,
                  train_idx, val_idx, stream.classes_per_exp, stream.n_classes, fp, stream.seed)


@dataclass(frozen=True)
class StreamSpec:
    """How a registered stream is made: which dataset, how it is split, and its version."""

    dataset: str
    kind: Literal["split", "permuted", "rotated", "text"]
    n_experiences: int
    version: str
    family: str
    #: a custom stream's own builder ``f(seed, data_root, task_incremental) -> Stream``
    builder: Callable[..., Stream] | None = None
    #: always task-incremental (a split stream with task labels and one head per experience).
    #: Not in the repr, which the fingerprint hashes: adding this field changed no existing
    #: stream's fingerprint, and split-fmnist-til holds the very data of split-fmnist
    task_incremental: bool = field(default=False, repr=False)


StreamBuilder = Callable[..., Stream]
STREAMS: Registry[StreamSpec] = Registry("stream")


def _add(name: str, spec: StreamSpec, description: str) -> None:
    STREAMS.add(name, spec, description=description, family=spec.family,
                embedded=spec.dataset in ("digits", "mnist1d"),
                model="smollm2-135m" if spec.kind == "text" else "mlp")


_add("split-digits", StreamSpec("digits", "split", 5, "1.0", "embedded"),
     "scikit-learn digits (8x8), 5 experiences x 2 classes; embedded, no files")
_add("split-mnist1d", StreamSpec("mnist1d", "split", 5, "1.0", "embedded"),
     "MNIST-1D (40-d, generated), 5 experiences x 2 classes; embedded, no files")
_add("split-fmnist", StreamSpec("fashion-mnist", "split", 5, "1.0", "mnist"),
     "Fashion-MNIST, 5 experiences x 2 classes (class-incremental)")
_add("perm-fmnist", StreamSpec("fashion-mnist", "permuted", 10, "1.0", "mnist"),
     "Fashion-MNIST under 10 fixed pixel permutations (domain-incremental)")
_add("split-fmnist-til", StreamSpec("fashion-mnist", "split", 5, "1.0", "mnist", task_incremental=True),
     "Fashion-MNIST, 5 experiences x 2 classes, task-incremental (task labels, one head each)")
_add("rot-fmnist", StreamSpec("fashion-mnist", "rotated", 5, "1.0", "mnist"),
     "Fashion-MNIST under 5 seeded rotations in [0, 180) degrees (domain-incremental)")
_add("text-v1", StreamSpec("text-v1", "text", 6, "1", "text"),
     "6 real text tasks (FreeDict en-fr/es/de, WordNet supersense and definitions, fortune "
     "topics) for a pretrained causal LM; tokenized by the model (clbench.run.text)")
_add("split-mnist", StreamSpec("mnist", "split", 5, "1.0", "mnist"),
     "MNIST, 5 experiences x 2 classes; reads a local copy")
_add("perm-mnist", StreamSpec("mnist", "permuted", 10, "1.0", "mnist"),
     "MNIST under 10 fixed pixel permutations; reads a local copy")
_add("split-cifar10", StreamSpec("cifar10", "split", 5, "1.0", "cifar"),
     "CIFAR-10, 5 experiences x 2 classes; reads a local copy")
_add("split-cifar100", StreamSpec("cifar100", "split", 10, "1.0", "cifar"),
     "CIFAR-100, 10 experiences x 10 classes; reads a local copy")


def register_stream(name: str, *, description: str, version: str, family: str = "custom",
                    n_experiences: int = 0) -> Callable[[StreamBuilder], StreamBuilder]:
    """Decorator registering a custom stream builder
    ``f(seed: int, data_root: Path | None, task_incremental: bool) -> Stream``."""

    def deco(fn: StreamBuilder) -> StreamBuilder:
        spec = StreamSpec("custom", "split", n_experiences, version, family, builder=fn)
        STREAMS.add(name, spec, description=description, family=family, embedded=False)
        return fn

    return deco


def build_stream(name: str, seed: int = 0, data_root: Path | str | None = None,
                 task_incremental: bool = False, download: bool = False) -> Stream:
    """Load the dataset behind ``name`` and cut it into experiences for ``seed`` (a stream
    registered task-incremental is so whatever ``task_incremental`` says)."""
    entry = STREAMS.get(name)
    spec = entry.obj
    task_incremental = task_incremental or spec.task_incremental
    if spec.kind == "text":
        raise ClbenchError(f"stream {name!r} is tokenized by its language model: run it with "
                           f"clbench run --stream {name} --model smollm2-135m (or "
                           "clbench.run.text.run_text)")
    if spec.builder is not None:
        return spec.builder(seed=seed, data_root=data_root, task_incremental=task_incremental)
    raw = load_dataset(spec.dataset, data_root=data_root, download=download)
    if spec.kind == "split":
        return split_stream(name, spec, raw, seed, task_incremental)
    if spec.kind == "rotated":
        return rotated_stream(name, spec, raw, seed)
    return permuted_stream(name, spec, raw, seed)


def split_stream(name: str, spec: StreamSpec, raw: RawData, seed: int,
                 task_incremental: bool = False) -> Stream:
    """Class-incremental split: a seeded class order cut into equal groups."""
    n_exp = spec.n_experiences
    if raw.n_classes % n_exp:
        raise ValueError(f"{raw.n_classes} classes do not split into {n_exp} experiences")
    order = np.random.default_rng(seed).permutation(raw.n_classes).tolist()
    per = raw.n_classes // n_exp
    groups = [order[e * per:(e + 1) * per] for e in range(n_exp)]

    def layout(y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Rows grouped by experience (original order kept inside a group), so that each
        experience is one contiguous range of the store and reads are zero-copy slices."""
        groups_rows = [torch.nonzero(torch.isin(y, torch.tensor(g)), as_tuple=True)[0] for g in groups]
        order = torch.cat(groups_rows)
        starts = np.cumsum([0] + [len(r) for r in groups_rows])
        return order, [torch.arange(int(starts[e]), int(starts[e + 1])) for e in range(n_exp)]

    tr_order, tr_idx = layout(raw.y_train)
    te_order, te_idx = layout(raw.y_test)
    return Stream(
        name=name, version=spec.version,
        scenario="task-il" if task_incremental else "class-il",
        x_train=raw.x_train[tr_order], y_train=raw.y_train[tr_order],
        x_test=raw.x_test[te_order], y_test=raw.y_test[te_order],
        train_idx=tr_idx, test_idx=te_idx,
        classes_per_exp=groups, n_classes=raw.n_classes,
        fingerprint=sha256_of(raw.fingerprint.encode(), repr((spec, order)).encode()),
        seed=seed,
    )


def permuted_stream(name: str, spec: StreamSpec, raw: RawData, seed: int) -> Stream:
    """Domain-incremental stream: experience ``e`` sees every input under permutation ``P_e``
    of its features (all classes in every experience)."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(raw.input_shape))
    perms = [torch.from_numpy(rng.permutation(d)) for _ in range(spec.n_experiences)]

    def permute(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), d)[:, p].reshape(x.shape)

    n_tr, n_te = len(raw.y_train), len(raw.y_test)
    classes = list(range(raw.n_classes))
    return Stream(
        name=name, version=spec.version, scenario="domain-il",
        x_train=torch.cat([permute(raw.x_train, p) for p in perms]),
        y_train=raw.y_train.repeat(spec.n_experiences),
        x_test=torch.cat([permute(raw.x_test, p) for p in perms]),
        y_test=raw.y_test.repeat(spec.n_experiences),
        train_idx=[torch.arange(e * n_tr, (e + 1) * n_tr) for e in range(spec.n_experiences)],
        test_idx=[torch.arange(e * n_te, (e + 1) * n_te) for e in range(spec.n_experiences)],
        classes_per_exp=[classes] * spec.n_experiences, n_classes=raw.n_classes,
        fingerprint=sha256_of(raw.fingerprint.encode(),
                              repr(spec).encode(), *(p.numpy().tobytes() for p in perms)),
        seed=seed,
    )


def rotation_angles(seed: int, n: int) -> list[float]:
    """``n`` angles in degrees, uniform in [0, 180), from ``default_rng(seed)`` (rounded to
    0.01 degree so they print as they are used): the Rotated-MNIST protocol of Lopez-Paz &
    Ranzato, "Gradient Episodic Memory for Continual Learning" (NeurIPS 2017), a fixed angle
    in [0, 180) per task."""
    return [round(float(a), 2) for a in np.random.default_rng(seed).uniform(0.0, 180.0, n)]


def rotate_images(x: torch.Tensor, degrees: float, fill: float, batch: int = 8192) -> torch.Tensor:
    """``x [N, C, H, W]`` rotated counter-clockwise by ``degrees`` about the image centre,
    bilinear, with ``fill`` where the rotated image has no source pixel (the background
    value of normalised images, not 0). A pixel at output position ``p`` (centred, in
    normalised coordinates) reads the input at ``R(-theta) p``."""
    theta = torch.tensor(np.deg2rad(degrees), dtype=torch.float64)
    c, s_ = float(torch.cos(theta)), float(torch.sin(theta))
    mat = torch.tensor([[c, -s_, 0.0], [s_, c, 0.0]], dtype=x.dtype)
    out = torch.empty_like(x)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch] - fill
        grid = torch.nn.functional.affine_grid(mat.expand(len(xb), 2, 3), list(xb.shape),
                                               align_corners=False)
        out[i:i + batch] = torch.nn.functional.grid_sample(
            xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    return out


def rotated_stream(name: str, spec: StreamSpec, raw: RawData, seed: int) -> Stream:
    """Domain-incremental stream: experience ``e`` sees every image rotated by angle ``a_e``
    (:func:`rotation_angles`; all classes in every experience). The fill value is the
    dataset's minimum (its normalised black)."""
    if len(raw.input_shape) != 3:
        raise ValueError(f"stream {name!r} rotates images [C, H, W]; {raw.name} has input "
                         f"shape {raw.input_shape}")
    angles = rotation_angles(seed, spec.n_experiences)
    fill = float(raw.x_train.min())
    n_tr, n_te = len(raw.y_train), len(raw.y_test)
    classes = list(range(raw.n_classes))
    return Stream(
        name=name, version=spec.version, scenario="domain-il",
        x_train=torch.cat([rotate_images(raw.x_train, a, fill) for a in angles]),
        y_train=raw.y_train.repeat(spec.n_experiences),
        x_test=torch.cat([rotate_images(raw.x_test, a, fill) for a in angles]),
        y_test=raw.y_test.repeat(spec.n_experiences),
        train_idx=[torch.arange(e * n_tr, (e + 1) * n_tr) for e in range(spec.n_experiences)],
        test_idx=[torch.arange(e * n_te, (e + 1) * n_te) for e in range(spec.n_experiences)],
        classes_per_exp=[classes] * spec.n_experiences, n_classes=raw.n_classes,
        fingerprint=sha256_of(raw.fingerprint.encode(), repr((spec, angles, fill)).encode()),
        seed=seed,
    )
