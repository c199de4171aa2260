"""Memory cost: the bytes of state a strategy keeps between experiences, and peak RSS.

    >>> acct = state_bytes(strategy, bytes_per_sample=stream.nbytes_per_sample())
    >>> acct.total, acct.by_kind     # {"samples": ..., "tensors": ..., "model_copies": ...}

:func:`state_bytes` walks the strategy's plugins (and a template strategy's own attributes)
after an experience and counts what they hold, whatever the method:

* stored samples (any clbench-made dataset: replay buffers, GDumb's memory, Cumulative's
  union): ``len(dataset) x bytes_per_sample`` plus any extra tensor attribute (DER's logits);
* tensors (EWC's parameters and Fisher diagonals, SI's importances, SAE masks ...): their bytes;
* model copies (LwF's previous model): parameter and buffer bytes;
* SAE dictionaries a method keeps (sae-reg's frozen SAE): their bytes, under their own kind ``sae``.

Tensors shared with the live model, the optimizer, the current experience's data and
clbench's own bookkeeping plugins are excluded; every tensor is counted once. A method that
keeps state in an unusual container (a file, a numpy array) is not seen: tests pin the figure
for every built-in method.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch
from torch import nn

#: strategy attributes that are transient or not method state
_SKIP_KEYS = frozenset({
    "model", "optimizer", "_criterion", "plugins", "evaluator", "dataloader", "experience",
    "adapted_dataset", "mbatch", "mb_output", "loss", "clock", "_eval_streams", "device",
    "current_eval_stream", "_distributed_check", "replay_loader", "model_adaptation",
    "_base_plugin_callbacks", "bridge", "stream", "ctx",
})


@dataclass
class StateBytes:
    """Bytes of persisted state, split by kind."""

    by_kind: dict[str, int] = field(default_factory=lambda: {"samples": 0, "tensors": 0,
                                                              "model_copies": 0, "sae": 0})

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def module_bytes(m: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(tensor_bytes(t) for t in list(m.parameters()) + list(m.buffers()))


class _Walker:
    def __init__(self, live: nn.Module, bytes_per_sample: int, exclude: set[int]) -> None:
        self.bps = bytes_per_sample
        self.acct = StateBytes()
        self.seen: set[int] = set(exclude)
        self.ptrs: set[tuple[int, int]] = {(t.data_ptr(), t.numel())
                                           for t in list(live.parameters()) + list(live.buffers())}

    def tensor(self, t: torch.Tensor, kind: str) -> None:
        key = (t.data_ptr(), t.numel())
        if key not in self.ptrs and t.numel():
            self.ptrs.add(key)
            self.acct.by_kind[kind] += tensor_bytes(t)

    def walk(self, obj: Any, depth: int = 0) -> None:
        if obj is None or depth > 8 or id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            self.tensor(obj, "tensors")
        elif isinstance(obj, nn.Module):
            from clbench.sae.topk import SAEBase
            kind = "sae" if isinstance(obj, SAEBase) else "model_copies"
            for t in list(obj.parameters()) + list(obj.buffers()):
                self.tensor(t, kind)
        elif hasattr(obj, "sample_id") and hasattr(obj, "targets"):  # a clbench-made dataset
            self.acct.by_kind["samples"] += len(obj) * self.bps
            logits = getattr(obj, "logits", None)
            if logits is not None and len(obj):
                self.acct.by_kind["tensors"] += len(obj) * tensor_bytes(torch.as_tensor(logits[0]))
        elif isinstance(obj, dict):
            for v in obj.values():
                self.walk(v, depth + 1)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                self.walk(v, depth + 1)
        elif _is_method_object(obj):
            for k, v in vars(obj).items():
                if k not in _SKIP_KEYS:
                    self.walk(v, depth + 1)


def _is_method_object(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return hasattr(obj, "__dict__") and mod.split(".")[0] in ("avalanche", "clbench", "strategies")


def state_bytes(strategy: Any, bytes_per_sample: int, skip_plugins: tuple[type, ...] = ()) -> StateBytes:
    """Bytes of state ``strategy`` and its plugins keep (see module docstring)."""
    from avalanche.training.plugins.evaluation import EvaluationPlugin

    exclude = {id(strategy.model), id(getattr(strategy, "optimizer", None))}
    w = _Walker(strategy.model, bytes_per_sample, exclude)
    for p in strategy.plugins:
        if not isinstance(p, (EvaluationPlugin, *skip_plugins)):
            w.walk(p)
    w.seen.update(id(p) for p in strategy.plugins)
    for k, v in vars(strategy).items():
        if k not in _SKIP_KEYS:
            w.walk(v)
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
