"""Executors: how a sweep's cells are dispatched — in turn, over local processes, or over Ray.

    clbench run --suite quick --executor process --workers 2
    clbench run --suite cpu-v1 --executor ray --address auto --workers 8

    >>> ex = create_executor("process", workers=2)
    >>> paths = ex.run(todo, SweepOptions(), record)     # todo: list[plan.Planned]

Every executor has the same small interface: ``start`` (load data or start workers before the
progress bar is drawn; a second call keeps them), ``run`` (run the given cells, hand each finished
:class:`~clbench.results.RunResult` to ``record``, return the paths ``record`` wrote) and
``close``. ``record`` runs in the calling process only, so each result file is written once,
atomically, by one writer, whichever executor ran it; a worker never touches the results folder
(on a Ray cluster it need not even see it).

A cell that raises is returned as a result with ``status: "failed"`` and the traceback as its
``error``, and the sweep goes on. A :class:`~clbench.errors.ClbenchError` (e.g. a dataset
missing on a worker) is the user's to fix: it stops the sweep with its one-line message.

Threads: with ``W`` workers on a machine of ``C`` cores, each ``process`` worker runs torch on
``max(1, C // W)`` threads; each Ray task reserves and uses ``threads`` CPUs (default 1). A
given ``threads`` applies to every executor. Results are bit-identical across executors for the
same thread count (the thread count is recorded in every result's ``provenance.determinism``).
Workers cache one stream, so submitting cells stream-major (as suites do) builds each stream
once per worker and seed.
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from clbench.errors import ClbenchError
from clbench.registry import Registry
from clbench.results import RunResult
from clbench.run.logs import LogSpec, close_loggers, log_dir, make_evaluator
from clbench.run.plan import Planned
from clbench.run.provenance import determinism_settings, provenance
from clbench.run.runner import Progress, build_model, run
from clbench.streams import STREAMS, Stream, build_stream

#: writes one finished cell's result (atomically) and advances the progress bar; returns its path
Record = Callable[[Planned, RunResult], Path]


@dataclass(frozen=True)
class SweepOptions:
    """What every cell of a sweep shares besides its config (plain values: sent to workers)."""

    data_root: str | None = None
    task_incremental: bool = False
    download: bool = False
    show_progress: bool = True
    #: Avalanche loggers of every cell run (``--log``; :mod:`clbench.run.logs`), None: none
    log: LogSpec | None = None


# --- one cell, in whichever process runs it ---------------------------------------------------

_STREAMS: dict[tuple[str, int, str | None, bool], Stream] = {}


def cached_stream(name: str, seed: int, opts: SweepOptions) -> Stream:
    """The stream, built once per (stream, seed) in this process; one stream in memory at a time."""
    key = (name, seed, opts.data_root, opts.task_incremental)
    if key not in _STREAMS:
        _STREAMS.clear()
        _STREAMS[key] = build_stream(name, seed=seed, data_root=opts.data_root,
                                     task_incremental=opts.task_incremental, download=opts.download)
    return _STREAMS[key]


def is_text(p: Planned) -> bool:
    """A text stream: tokenized by its model inside :func:`run`, never built here."""
    return STREAMS.get(p.cell.stream).obj.kind == "text"


def preflight(p: Planned, opts: SweepOptions) -> None:
    """Read the cell's data (and, for a text stream, find its model's weights) so that a
    missing file fails with one clear line before anything runs."""
    if not is_text(p):
        cached_stream(p.cell.stream, p.cell.seed, opts)
        return
    from clbench.data.text_tasks import build_text_v1
    from clbench.models.lm import smollm2_gguf

    t = p.config.train
    build_text_v1(p.cell.seed, n_train=t["stream.n_train"], n_test=t["stream.n_test"],
                  n_prose=t["stream.n_prose"], data_root=p.config.data_root)
    if not p.config.model_params.get("weights"):
        smollm2_gguf()


def check_layers(todo: list[Planned], opts: SweepOptions) -> None:
    """A hook layer named in a setting (``mono.layer``, a method's ``layer``) that the cell's
    model lacks is a ClbenchError before any cell runs, not a failure after training: the
    model is built (untrained) once per distinct (stream, model, settings) naming a layer."""
    from clbench.sae.capture import hook_module  # lazy: only when a layer is named

    seen: set[str] = set()
    for p in todo:
        c = p.config
        named = [(f"{m}.layer", ps["layer"]) for m, ps in c.strategy_params.items()
                 if isinstance(ps.get("layer"), str) and ps["layer"]]
        if c.mono["layer"] and c.mono["when"] != "off":
            named.append(("mono.layer", c.mono["layer"]))
        key = repr((p.cell.stream, p.cell.model, c.model_params, c.task_incremental, named))
        if not named or key in seen or is_text(p):
            continue
        seen.add(key)
        model = build_model(c, cached_stream(p.cell.stream, p.cell.seed, opts))
        for setting, layer in named:
            try:
                hook_module(model, layer)
            except ClbenchError as e:
                raise ClbenchError(f"--set {setting}={layer}: {e}") from None


def n_experiences(p: Planned, opts: SweepOptions) -> int:
    if is_text(p):
        return STREAMS.get(p.cell.stream).obj.n_experiences
    return cached_stream(p.cell.stream, p.cell.seed, opts).n_experiences


def failed_result(p: Planned, error: str, stream: Stream | None = None) -> RunResult:
    """A ``status: "failed"`` result for a cell that raised before :func:`run` could report."""
    meta: dict[str, Any] = {"name": p.cell.stream, "version": None, "fingerprint": None}
    if stream is not None:
        meta = {"name": stream.name, "version": stream.version, "fingerprint": stream.fingerprint,
                "scenario": stream.scenario, "n_experiences": stream.n_experiences,
                "classes_per_exp": stream.classes_per_exp}
    elif p.cell.stream in STREAMS:
        meta["version"] = STREAMS.get(p.cell.stream).obj.version
    prov = provenance(p.config.seed)
    prov["determinism"] = determinism_settings()
    return RunResult(config=p.config.to_dict(), stream=meta, accuracy_matrix=[],
                     random_init_accuracy=[], metrics={}, per_experience=[], provenance=prov,
                     status="failed", error=error)


def run_planned(p: Planned, opts: SweepOptions, progress: Progress | None = None) -> RunResult:
    """Run one cell; anything but a :class:`ClbenchError` comes back as a failed result."""
    stream = None if is_text(p) else cached_stream(p.cell.stream, p.cell.seed, opts)
    loggers: list[Any] = []
    try:
        evaluator = None
        if opts.log is not None:  # curves next to the result (clbench.run.logs)
            c = p.cell
            evaluator, loggers = make_evaluator(opts.log, log_dir(p.path),
                                                f"{c.stream}/{c.model}/{c.strategy}{p.tag}/seed{c.seed}",
                                                p.config.to_dict())
        return run(p.config, stream=stream, progress=progress, evaluator=evaluator)
    except ClbenchError:
        raise
    except Exception as e:  # a bug in a method must not stop a sweep; keep the trace
        return failed_result(p, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", stream)
    finally:
        close_loggers(loggers)
        gc.collect()  # Avalanche objects form cycles; free the run's tensors before the next


def _set_threads(threads: int) -> None:
    """Worker start-up: a fixed torch thread count (part of what makes results bit-identical)."""
    torch.set_num_threads(threads)


#: how often (seconds) a pool worker's watchdog checks that its parent is still alive
WATCHDOG_PERIOD = 0.5


def _die_with_parent(parent: int) -> None:
    """Make this (worker) process end when ``parent`` does, however the parent ends (even
    SIGKILL, which runs none of its clean-up): on Linux the kernel sends SIGTERM at the parent's
    death (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread checks every
    :data:`WATCHDOG_PERIOD` seconds whether the parent changed (an orphan is re-parented) and
    exits then. A parent already gone before this ran is caught by the first check."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc prctl: the watchdog alone
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_PERIOD)
        os._exit(1)  # no clean-up to do: a worker never touches the results folder

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="clbench-parent-watchdog", daemon=True).start()


def _start_worker(threads: int, parent: int | None = None) -> None:
    """A pool worker's start-up: its thread count; it dies with its parent (``parent``'s pid,
    see :func:`_die_with_parent`); Ctrl-C is the driver's to handle (it stops the workers), so a
    worker does not print its own traceback; SIGTERM (from the driver or at the parent's death)
    ends it at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is not None:
        _die_with_parent(parent)
    _set_threads(threads)


class Terminated(KeyboardInterrupt):
    """SIGTERM of the driver: handled like Ctrl-C (the pool's workers are stopped, finished
    cells are kept, the command exits non-zero with one line)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def _threaded_cell(p: Planned, opts: SweepOptions, threads: int) -> RunResult:
    """A Ray task's body: fix the thread count of the (reused) worker process, run the cell."""
    _set_threads(threads)
    return run_planned(p, opts)


def _unreachable(address: str) -> str | None:
    """Why ``HOST:PORT`` (optionally ``ray://``) takes no connection, or None if it does (or if
    it is not of that form, e.g. ``auto``): Ray itself retries a dead address for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        return f"nothing answers there ({e.strerror or e})"
    return None


# --- executors --------------------------------------------------------------------------------

class Executor(ABC):
    """Runs planned cells; ``workers``/``address`` are checked by the executors that use them."""

    name: str = ""

    def __init__(self, workers: int | None = None, address: str | None = None,
                 threads: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ClbenchError(f"--workers {workers}: must be at least 1")
        if threads is not None and threads < 1:
            raise ClbenchError(f"--threads {threads}: must be at least 1")
        if address is not None and self.name != "ray":
            raise ClbenchError(f"--address is for a Ray cluster; add --executor ray "
                               f"(got --executor {self.name})")
        self.workers, self.address, self.threads = workers, address, threads

    def start(self, todo: list[Planned], opts: SweepOptions) -> None:
        """Prepare before the progress bar is drawn (may raise :class:`ClbenchError`)."""

    @abstractmethod
    def run(self, todo: list[Planned], opts: SweepOptions, record: Record) -> list[Path]:
        """Run ``todo``, passing each result to ``record``; the paths written, as completed."""

    def close(self) -> None:
        """Release workers (called whether ``run`` finished or raised)."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def register_executor(name: str, description: str) -> Callable[[type[Executor]], type[Executor]]:
    def deco(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        return EXECUTORS.register(name, description=description)(cls)
    return deco


def create_executor(name: str, workers: int | None = None, address: str | None = None,
                    threads: int | None = None) -> Executor:
    """The executor registered as ``name``; unknown names and bad options raise ClbenchError."""
    return EXECUTORS.get(name).obj(workers=workers, address=address, threads=threads)


@register_executor("local", "one cell after another in this process (the default)")
class LocalExecutor(Executor):
    def __init__(self, workers: int | None = None, address: str | None = None,
                 threads: int | None = None) -> None:
        super().__init__(workers, address, threads)
        if workers not in (None, 1):
            raise ClbenchError(f"--workers {workers} needs a parallel executor: "
                               f"add --executor process (or ray)")

    def start(self, todo: list[Planned], opts: SweepOptions) -> None:
        if self.threads:
            _set_threads(self.threads)
        if todo:  # load the first stream before any bar is drawn: missing data fails cleanly
            preflight(todo[0], opts)

    def run(self, todo: list[Planned], opts: SweepOptions, record: Record) -> list[Path]:
        paths = []
        for p in todo:
            n = n_experiences(p, opts)
            bar = tqdm(total=n, desc="  experiences", leave=False, disable=not opts.show_progress,
                       dynamic_ncols=True)

            def progress(i: int, n: int) -> None:
                bar.total = n
                bar.update(i - bar.n)

            try:
                result = run_planned(p, opts, progress)
            finally:
                bar.close()
            paths.append(record(p, result))
        return paths

    def close(self) -> None:
        _STREAMS.clear()


@register_executor("process", "a pool of local worker processes (--workers, default: all cores)")
class ProcessExecutor(Executor):
    def __init__(self, workers: int | None = None, address: str | None = None,
                 threads: int | None = None) -> None:
        super().__init__(workers, address, threads)
        self.workers = workers or os.cpu_count() or 1
        self.pool: ProcessPoolExecutor | None = None
        self.sigterm: Any = None  # the SIGTERM handler start() replaced, put back by close()

    def start(self, todo: list[Planned], opts: SweepOptions) -> None:
        if self.pool is not None:  # already started: keep the warm workers
            return
        threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no forked threads
        if threading.current_thread() is threading.main_thread():  # SIGTERM stops the pool
            self.sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=spawn, initializer=_start_worker,
                                        initargs=(threads, os.getpid()))

    def run(self, todo: list[Planned], opts: SweepOptions, record: Record) -> list[Path]:
        assert self.pool is not None, "start() first"
        futures: dict[Future[RunResult], Planned] = {
            self.pool.submit(run_planned, p, opts): p for p in todo}
        paths, pending = [], set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        result = f.result()
                    except BrokenProcessPool:
                        raise ClbenchError("a worker process died (out of memory?); finished "
                                           "cells are saved: run the same command again to "
                                           "resume") from None
                    paths.append(record(futures[f], result))
        except ClbenchError:  # the user's to fix: drop this sweep's queued cells, keep the pool
            for f in pending:
                f.cancel()
            raise
        except BaseException:  # Ctrl-C: stop the workers mid-cell, drop the queued cells
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.terminate()  # ProcessPoolExecutor has no public way before Python 3.14
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            raise
        return paths

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if self.sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.sigterm)
            self.sigterm = None


@register_executor("ray", "Ray tasks on a local cluster or an existing one (--address); "
                          "pip install 'clbench[ray]'")
class RayExecutor(Executor):
    def __init__(self, workers: int | None = None, address: str | None = None,
                 threads: int | None = None) -> None:
        super().__init__(workers, address, threads)
        try:
            import ray  # an optional extra: imported only when this executor is chosen
        except ImportError:
            raise ClbenchError("--executor ray needs Ray: pip install 'clbench[ray]'") from None
        self.ray = ray
        self.started = False  # whether this executor started (and so must stop) the Ray runtime

    def start(self, todo: list[Planned], opts: SweepOptions) -> None:
        ray, threads = self.ray, self.threads or 1
        if self.address and (why := _unreachable(self.address)):
            raise ClbenchError(f"--address {self.address}: {why}; start a cluster there with "
                               f"'ray start --head' or use --address auto")
        if not ray.is_initialized():  # else: use the connection this process already has
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.WARNING,
                             log_to_driver=False)
                else:
                    cpus = (self.workers or os.cpu_count() or 1) * threads
                    ray.init(num_cpus=cpus, include_dashboard=False,
                             logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as e:
                raise ClbenchError(f"--address {self.address}: no Ray cluster there ({e}); "
                                   f"start one with 'ray start --head'") from None
            self.started = True
        if self.workers is None:  # as many tasks at once as the cluster has CPUs for
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)

    def run(self, todo: list[Planned], opts: SweepOptions, record: Record) -> list[Path]:
        ray, threads = self.ray, self.threads or 1
        if opts.data_root:  # a worker's working folder is not ours
            opts = replace(opts, data_root=str(Path(opts.data_root).expanduser().resolve()))
        task = ray.remote(num_cpus=threads, max_retries=0)(_threaded_cell)
        queue, running, paths = list(reversed(todo)), {}, []
        try:
            while queue or running:
                while queue and len(running) < (self.workers or 1):
                    p = queue.pop()
                    running[task.remote(p, opts, threads)] = p
                done, _ = ray.wait(list(running), num_returns=1)
                p = running.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:
                    if isinstance(e.cause, ClbenchError):
                        raise e.cause from None
                    result = failed_result(p, f"{type(e.cause).__name__}: {e}")
                except ray.exceptions.RayError as e:  # the worker died: out of memory, node lost
                    result = failed_result(p, f"{type(e).__name__}: {e}")
                paths.append(record(p, result))
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
        return paths

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
