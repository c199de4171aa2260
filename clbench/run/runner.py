"""One run: a stream, a model and a strategy, trained experience by experience.

    >>> from clbench import resolve_config, run
    >>> result = run(resolve_config("split-digits", "replay", "mlp", seed=0))
    >>> result.accuracy_matrix[-1], result.metric("final_accuracy")

The run evaluates the untrained model on every test experience (``b`` for FWT), then after each
training experience ``i`` evaluates all of them to fill row ``i`` of R, and checks every hook
layer for a dead output; collapsed experiences and dead layers become the result's ``flags``
(:mod:`clbench.metrics.flags`). Everything after training reads ``strategy.model``: a method
may replace the model object (Avalanche's GDumb does). Training goes through a
stock Avalanche template (Naive unless the method is one of Avalanche's strategy classes) with
the method's plugins, then clbench's :class:`~clbench.run.fastdata.FastDataPlugin` (in-memory
batches), the :class:`~clbench.run.plugins.DivergenceGuard` and the
:class:`~clbench.run.plugins.AccuracyRecorder`.
"""
from __future__ import annotations

import random
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np
import torch
from avalanche.training import Naive
from avalanche.training.plugins.evaluation import EvaluationPlugin
from torch import nn

from clbench.run.bridge import Bridge
from clbench.checkpoints import CheckpointSet
from clbench.run.config import RunConfig
from clbench.run.cost import PeakRSS, module_bytes, state_bytes
from clbench.run.fastdata import FastDataPlugin
from clbench.metrics.flags import DEAD_PROBE_ROWS, dead_layers, run_flags
from clbench.metrics.cl import cl_metrics
from clbench.metrics.registry import metric
from clbench.models import create_model
from clbench.models.multihead import make_multihead
from clbench.run.mono import mono_block
from clbench.run.plugins import AccuracyRecorder, DivergedError, DivergenceGuard
from clbench.run.provenance import determinism_settings, provenance
from clbench.results import RunResult
from clbench.strategy_api import BuildContext, build_components, parse_combo
from clbench.streams import STREAMS, Stream, build_stream, holdout

Progress = Callable[[int, int], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; with a fixed thread count CPU runs are bit-identical."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, train: dict[str, Any]) -> torch.optim.Optimizer:
    if train["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])
    return torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=train["momentum"],
                           weight_decay=train["weight_decay"])


def build_model(cfg: RunConfig, stream: Stream) -> nn.Module:
    model = create_model(cfg.model, input_shape=stream.input_shape, n_classes=stream.n_classes,
                         **cfg.model_params)
    return make_multihead(model) if cfg.task_incremental else model


def make_strategy(cfg: RunConfig, model: nn.Module, stream: Stream,
                  extra_plugins: list[Any] | None, tail: list[Any],
                  evaluator: EvaluationPlugin | None = None, *,
                  extras: dict[str, Any] | None = None) -> tuple[Any, list[Any], list[Any], Bridge]:
    """The run's Avalanche strategy: the method's template (Naive unless it is one of
    Avalanche's strategy classes) with its plugins, then ``extra_plugins``, clbench's
    :class:`FastDataPlugin` and :class:`DivergenceGuard`, then ``tail`` (the runner's recorders);
    cross-entropy criterion, the run's optimizer and batch sizes. Returns the strategy, the
    method specs, the method's own plugins and the :class:`Bridge` of ``stream``. ``extras``
    join the methods' :class:`BuildContext` extras (the text runner's tokenized stream)."""
    train = cfg.train
    ctx = BuildContext(stream=stream, model=model, batch_size=train["batch_size"],
                       epochs=train["epochs"], seed=cfg.seed,
                       extras={"data_root": cfg.data_root, "train": dict(train),
                               **(extras or {})})
    specs = parse_combo(cfg.strategy)
    template, method_plugins = build_components(specs, cfg.strategy_params, ctx)
    bridge = Bridge(stream)
    plugins = [*method_plugins, *(extra_plugins or []), FastDataPlugin(bridge, cfg.seed),
               DivergenceGuard(), *tail]
    strategy = (template or Naive)(
        model=model, optimizer=make_optimizer(model, train), criterion=nn.CrossEntropyLoss(),
        train_mb_size=train["batch_size"], train_epochs=train["epochs"],
        eval_mb_size=train["eval_batch_size"], device=train.get("device", "cpu"), plugins=plugins,
        evaluator=evaluator or EvaluationPlugin(loggers=[]), eval_every=-1)
    return strategy, specs, method_plugins, bridge


def method_record(plugins: list[Any]) -> dict[str, Any]:
    """What the method's plugins report about the experience just trained: the union of every
    plugin's ``experience_record()`` (see :mod:`clbench.strategy_api`), saved as
    ``per_experience[i]["method"]``."""
    out: dict[str, Any] = {}
    for p in plugins:
        report = getattr(p, "experience_record", None)
        if callable(report):
            out.update(report())
    return out


def run(cfg: RunConfig, stream: Stream | None = None, progress: Progress | None = None,
        extra_plugins: list[Any] | None = None,
        evaluator: EvaluationPlugin | None = None) -> RunResult:
    """Train and evaluate one configuration; a diverging run comes back with status "failed".

    ``extra_plugins`` run after the method's plugins; ``evaluator`` replaces the silent default
    (tests pass one with Avalanche's accuracy metrics to check R against them; ``--log`` one
    with Avalanche's loggers, :mod:`clbench.run.logs`; text streams take none).

    Avalanche's own warnings (no loggers, buffer notes) are silenced: clbench records what it
    measures in the result, and logs through Avalanche only when asked.
    """
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
            if "avalanche" not in str(filename):  # Avalanche forces its deprecation notes "always"
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.filterwarnings("ignore", message="No loggers specified")
        if STREAMS.get(cfg.stream).obj.kind == "text":   # a pretrained LM on text tasks
            from clbench.run.text import run_text
            return run_text(cfg, progress, extra_plugins)
        return _run(cfg, stream, progress, extra_plugins, evaluator)


def _run(cfg: RunConfig, stream: Stream | None, progress: Progress | None,
         extra_plugins: list[Any] | None, evaluator: EvaluationPlugin | None) -> RunResult:
    if stream is None:
        stream = build_stream(cfg.stream, seed=cfg.seed, data_root=cfg.data_root,
                              task_incremental=cfg.task_incremental)
    if cfg.train.get("validation", 0.0) > 0:
        stream = holdout(stream, cfg.train["validation"], cfg.seed)
    seed_everything(cfg.seed)
    model = build_model(cfg, stream)
    acc = AccuracyRecorder()
    strategy, specs, method_plugins, bridge = make_strategy(cfg, model, stream, extra_plugins,
                                                            [acc], evaluator)
    bm = bridge.benchmark()
    offline = any(s.offline for s in specs)
    per_exp: list[dict[str, Any]] = []
    R: list[list[float]] = []

    top_share: list[float] = []   # s_e: the most frequent prediction's share right after e

    def evaluate() -> tuple[list[float], float]:
        t0 = time.perf_counter()
        strategy.eval(bm.test_stream)
        return list(acc.row), time.perf_counter() - t0

    status, error = "ok", None
    b: list[float] = []
    flags: list[str] = []
    ckpts = CheckpointSet(list(model.hook_layers)) if cfg.keep_checkpoints else None
    with PeakRSS() as rss:
        try:
            b, _ = evaluate()
            steps = [bm.train_stream] if offline else list(bm.train_stream)
            for i, exp in enumerate(steps):
                t0 = time.perf_counter()
                strategy.train(exp, eval_streams=[])
                t_train = time.perf_counter() - t0
                sb = state_bytes(strategy, stream.nbytes_per_sample(),
                                 skip_plugins=(FastDataPlugin, DivergenceGuard, AccuracyRecorder))
                row, t_eval = evaluate()
                R.append(row)
                top_share[:] = acc.top_share if offline else [*top_share, acc.top_share[i]]
                entry = {"state_bytes": sb.total, "state_bytes_by_kind": sb.by_kind,
                         "train_seconds": t_train, "eval_seconds": t_eval}
                if record := method_record(method_plugins):
                    entry["method"] = record
                probe = stream.x_test[stream.test_idx[i][:DEAD_PROBE_ROWS]] if not offline else \
                    stream.x_test[torch.cat(stream.test_idx)[:DEAD_PROBE_ROWS]]
                flags += [f"dead:{name}@exp{i}" for name in dead_layers(strategy.model, probe)]
                when = cfg.mono["when"]
                if when == "every" or (when == "end" and i == len(steps) - 1):
                    t0 = time.perf_counter()
                    seen = list(range(stream.n_experiences)) if offline else list(range(i + 1))
                    entry["mono"] = mono_block(strategy.model, stream, seen, cfg.mono, cfg.seed)
                    entry["mono_seconds"] = time.perf_counter() - t0
                per_exp.append(entry)
                if ckpts is not None:
                    ckpts.add(i, strategy.model)
                if progress:
                    progress(i + 1, len(steps))
        except DivergedError as e:
            status, error = "failed", str(e)
        except Exception as e:  # a bug in a method must not stop a sweep; keep the trace
            status, error = "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"

    metrics: dict[str, dict[str, Any]] = {}
    if status == "ok":
        values: dict[str, Any] = dict(cl_metrics(R, b))
        cost = {"state_bytes": max(p["state_bytes"] for p in per_exp),
                "model_bytes": module_bytes(strategy.model), "peak_rss_bytes": rss.peak,
                "train_seconds": sum(p["train_seconds"] for p in per_exp),
                "eval_seconds": sum(p["eval_seconds"] for p in per_exp)}
        values.update({name: float(value) for name, value in cost.items()})
        if "mono" in per_exp[-1]:
            values.update(per_exp[-1]["mono"])
            values["mono_seconds"] = sum(p.get("mono_seconds", 0.0) for p in per_exp)
        # directions from the registry (clbench.metrics.registry); an unregistered name raises
        metrics = {name: metric(name).entry(value) for name, value in values.items()}
    prov = provenance(cfg.seed)
    prov["determinism"] = determinism_settings()
    return RunResult(
        config=cfg.to_dict(),
        stream={"name": stream.name, "version": stream.version, "fingerprint": stream.fingerprint,
                "scenario": stream.scenario, "n_experiences": stream.n_experiences,
                "classes_per_exp": stream.classes_per_exp},
        accuracy_matrix=R, random_init_accuracy=b, metrics=metrics, per_experience=per_exp,
        provenance=prov, status=status, error=error,
        flags=run_flags(R, stream.classes_per_exp, top_share, flags) if status == "ok" else flags,
        checkpoints=ckpts if status == "ok" else None)
