"""Memory cost: the bytes of state a strategy keeps between experiences, and peak RSS.

    >>> acct = state_bytes(strategy, bytes_per_sample=stream.nbytes_per_sample())
    >>> acct.total, acct.by_kind  # {"samples": .., "tensors": .., "model_copies": .., "sae": ..}

:func:`state_bytes` walks the strategy's plugins (and a template strategy's own attributes)
after an experience and counts what they hold, whatever the method and whatever module it
comes from (``strategies/``, a ``clbench submit`` file, a third-party package):

* stored samples (any clbench-made dataset, recognised by ``len()`` and its ``sample_id`` and
  ``targets`` attributes: replay buffers, GDumb's memory, Cumulative's union):
  ``len(dataset) x bytes_per_sample`` under ``samples``, plus the bytes of a ``logits``
  attribute (DER's) under ``tensors``;
* tensors (EWC's parameters and Fisher diagonals, SI's importances, SAE masks ...) and numpy
  arrays: their bytes (``numel x element_size``, ``nbytes``), under ``tensors``;
* model copies (LwF's previous model): the bytes of every ``nn.Module``'s parameters and
  buffers, under ``model_copies``;
* state an object declares a kind for (below), e.g. sae-reg's frozen SAE under ``sae``.

The walk follows dicts, lists, tuples, sets, deques, ``SimpleNamespace``, torch's
``TensorDataset`` and the attributes (``__dict__`` and ``__slots__``) of any object whose class
is not from the standard library, torch or numpy. It does not enter functions, classes,
modules, generators, ``functools.partial``, locks, threads, files, torch's and numpy's own
objects (optimizers, schedulers, data loaders, generators), nor an ``nn.Module`` beyond its
parameters and buffers. It skips the strategy itself, attributes named in ``_SKIP_KEYS`` (on
every object: ``model``, ``optimizer``, ``experience`` ...), the optimizer, Avalanche's
evaluator, the plugins the caller names (clbench's bookkeeping) and Avalanche's experiences,
streams and scenarios, which are the method's input: holding the current experience is not
state, while a dataset a method keeps is, even the current experience's own (Cumulative's
union after the first experience). Tensors sharing memory with the live model (its submodules,
views of its parameters) are not counted, and every tensor or array is counted once. The walk
is bounded: 8 levels below a plugin or strategy attribute, each object once (cycles are
harmless), at most ``_MAX_VISITS`` objects (past that it warns: the figure is a lower bound).
State kept where the walk cannot see it (a file, a C extension's memory, numbers in a Python
list, a dataset torch wraps in ``Subset``) is not counted; tests pin the figure for every
built-in method.

Declaring a kind: a class sets the class attribute ``__clbench_state_kind__`` (inherited by
its subclasses) to one of :data:`KINDS`; then the parameters, buffers, tensors, arrays and
stored logits found in its instances (and below them, until an object declares another kind)
count under that kind instead of ``model_copies`` / ``tensors``; stored samples stay
``samples``. Any other value is a :class:`~clbench.errors.ClbenchError` (the run fails).
:class:`clbench.sae.topk.SAEBase` declares ``"sae"``::

    class MyDictionary(nn.Module):
        __clbench_state_kind__ = "sae"
"""
from __future__ import annotations

import functools
import sys
import threading
import types
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import psutil
import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLExperience, CLScenario, CLStream
from avalanche.training.plugins.evaluation import EvaluationPlugin
from torch import nn

from clbench.errors import ClbenchError

#: the kinds of state, the keys of :attr:`StateBytes.by_kind`
KINDS = ("samples", "tensors", "model_copies", "sae")

#: the class attribute by which an object declares the kind of the state it holds
STATE_KIND_ATTR = "__clbench_state_kind__"

#: strategy attributes that are transient or not method state (skipped on every object)
_SKIP_KEYS = frozenset({
    "model", "optimizer", "_criterion", "plugins", "evaluator", "dataloader", "experience",
    "adapted_dataset", "mbatch", "mb_output", "loss", "clock", "_eval_streams", "device",
    "current_eval_stream", "_distributed_check", "replay_loader", "model_adaptation",
    "_base_plugin_callbacks", "bridge", "stream", "ctx",
})

#: levels of containers and attributes followed below a plugin (or a strategy attribute)
_MAX_DEPTH = 8

#: objects looked at in one walk; past it the walk stops with a warning (a lower bound)
_MAX_VISITS = 1_000_000

#: values that hold no state and are not followed
_ATOMS = (str, bytes, bytearray, int, float, complex, bool, range, slice, type(...))

#: objects never entered: the benchmark's experiences, streams and scenarios (the method's
#: input: what a method keeps of the data it keeps as a dataset), code, classes, modules,
#: iterators, concurrency and I/O handles, torch's and numpy's own objects (an optimizer or a
#: data loader of any class included)
_OPAQUE = (
    CLExperience, CLStream, CLScenario,
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.MethodWrapperType, types.WrapperDescriptorType, types.GeneratorType,
    types.CoroutineType, types.AsyncGeneratorType, types.FrameType, types.CodeType,
    types.TracebackType, types.MappingProxyType, functools.partial, property, staticmethod,
    classmethod, weakref.ReferenceType, threading.Thread, memoryview,
    torch.device, torch.dtype, torch.Generator, torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler, torch.utils.data.DataLoader, np.generic, np.dtype,
)

#: containers that are followed although their class is the stdlib's or torch's
_STD_CONTAINERS = (dict, list, tuple, set, frozenset, deque, types.SimpleNamespace,
                   torch.utils.data.TensorDataset)

#: top-level packages whose classes are library internals, not a method's state
_INTERNAL_PACKAGES = frozenset(sys.stdlib_module_names) | {"torch", "numpy"}


@dataclass
class StateBytes:
    """Bytes of persisted state, split by kind (the keys of :data:`KINDS`)."""

    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def module_bytes(m: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(tensor_bytes(t) for t in list(m.parameters()) + list(m.buffers()))


def declared_kind(obj: Any) -> str | None:
    """The kind ``obj``'s class declares for its state (``__clbench_state_kind__``), or None.

    Raises :class:`ClbenchError` for a declaration that is not one of :data:`KINDS`.
    """
    try:
        kind = getattr(type(obj), STATE_KIND_ATTR, None)
    except Exception:  # a metaclass whose __getattr__ raises: treat as undeclared
        return None
    if kind is not None and kind not in KINDS:
        raise ClbenchError(f"{type(obj).__module__}.{type(obj).__qualname__}.{STATE_KIND_ATTR}"
                           f" = {kind!r}: the kind of state must be one of {', '.join(KINDS)}")
    return kind


def _tensor_key(t: torch.Tensor) -> tuple[int, int]:
    try:
        return t.data_ptr(), t.numel()
    except (RuntimeError, NotImplementedError):  # no plain storage (sparse, wrapper subclasses)
        return id(t), t.numel()


def _is_opaque(obj: Any) -> bool:
    """Not state and not followed: see :data:`_OPAQUE` and :data:`_INTERNAL_PACKAGES`."""
    if isinstance(obj, _OPAQUE):
        return True
    package = (getattr(type(obj), "__module__", None) or "").split(".")[0]
    return package in _INTERNAL_PACKAGES and not isinstance(obj, _STD_CONTAINERS)


def _is_dataset(obj: Any) -> bool:
    """A clbench-made dataset (it carries the bridge's ``sample_id`` and ``targets``)."""
    try:
        return (hasattr(type(obj), "__len__") and hasattr(obj, "sample_id")
                and hasattr(obj, "targets"))
    except Exception:  # a __getattr__ that raises something else than AttributeError
        return False


def _fields(obj: Any) -> list[tuple[str, Any]]:
    """``obj``'s attributes: its ``__dict__`` and its ``__slots__``; [] where neither reads."""
    try:
        d = vars(obj)
        items = list(d.items()) if isinstance(d, dict) else []
    except Exception:  # no __dict__ (slots, C types) or one that fails to read
        items = []
    for cls in type(obj).__mro__:
        slots = vars(cls).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):  # private: name-mangled
                name = f"_{cls.__name__.lstrip('_')}{name}"
            try:
                items.append((name, object.__getattribute__(obj, name)))
            except Exception:  # an unset slot
                continue
    return items


class _Walker:
    def __init__(self, live: nn.Module, bytes_per_sample: int, exclude: Iterable[Any]) -> None:
        self.bps = bytes_per_sample
        self.acct = StateBytes()
        # ids stay valid while the objects live: keep a reference to each one we mark seen
        self.alive: list[Any] = [o for o in exclude if o is not None]
        self.seen: set[int] = {id(o) for o in self.alive}
        self.visits = 0
        self.ptrs: set[tuple[int, int]] = {_tensor_key(t)
                                           for t in list(live.parameters()) + list(live.buffers())}

    def add(self, key: tuple[int, int], nbytes: int, kind: str) -> None:
        if key not in self.ptrs and nbytes:
            self.ptrs.add(key)
            self.acct.by_kind[kind] += nbytes

    def tensor(self, t: torch.Tensor, kind: str) -> None:
        if t.numel():
            self.add(_tensor_key(t), tensor_bytes(t), kind)

    def walk(self, obj: Any, depth: int = 0, kind: str | None = None) -> None:
        if obj is None or depth > _MAX_DEPTH or isinstance(obj, _ATOMS) or id(obj) in self.seen:
            return
        if self.visits >= _MAX_VISITS:
            return
        self.visits += 1
        self.seen.add(id(obj))
        self.alive.append(obj)
        declared = declared_kind(obj)
        kind = declared or kind
        if isinstance(obj, torch.Tensor):
            self.tensor(obj, kind or "tensors")
        elif isinstance(obj, nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                self.tensor(t, kind or "model_copies")
        elif isinstance(obj, np.ndarray):
            self.add((obj.__array_interface__["data"][0], obj.size), obj.nbytes, kind or "tensors")
        elif declared is None and _is_opaque(obj):
            return
        elif _is_dataset(obj):
            n = len(obj)
            self.acct.by_kind["samples"] += n * self.bps
            logits = getattr(obj, "logits", None)
            if logits is not None and n:
                row = tensor_bytes(torch.as_tensor(logits[0]))
                self.acct.by_kind[kind or "tensors"] += n * row
        elif isinstance(obj, dict):
            self.walk_all(list(obj.values()), depth + 1, kind)   # a copy: dicts raise if changed
        elif isinstance(obj, (list, tuple)):
            self.walk_all(obj, depth + 1, kind)
        elif isinstance(obj, (set, frozenset, deque)):
            self.walk_all(list(obj), depth + 1, kind)
        else:
            self.walk_all([v for k, v in _fields(obj) if k not in _SKIP_KEYS], depth + 1, kind)

    def walk_all(self, values: Iterable[Any], depth: int, kind: str | None) -> None:
        """Walk each of ``values``; numbers and strings (a long list of indices) cost no call."""
        for v in values:
            if v is not None and not isinstance(v, _ATOMS):
                self.walk(v, depth, kind)


def state_bytes(strategy: Any, bytes_per_sample: int,
                skip_plugins: tuple[type, ...] = ()) -> StateBytes:
    """Bytes of state ``strategy`` and its plugins keep (see module docstring).

    ``skip_plugins``: plugin classes that are bookkeeping, not method state (the runner's).
    """
    skipped = [p for p in strategy.plugins if isinstance(p, (EvaluationPlugin, *skip_plugins))]
    exclude = [strategy, strategy.model, getattr(strategy, "optimizer", None), *skipped]
    w = _Walker(strategy.model, bytes_per_sample, exclude)
    w.walk_all(strategy.plugins, 0, None)
    fields = [v for k, v in _fields(strategy) if k not in _SKIP_KEYS]
    w.walk_all(fields, 0, declared_kind(strategy))
    if w.visits >= _MAX_VISITS:
        warnings.warn(f"state_bytes stopped after {_MAX_VISITS} objects: the state of "
                      f"{type(strategy).__name__} and its plugins is a lower bound",
                      RuntimeWarning, stacklevel=2)
    return w.acct


class PeakRSS:
    """Samples this process's resident set size in a thread; ``peak`` is the maximum seen.

        with PeakRSS() as rss:
            work()
        rss.peak  # bytes
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
