"""One run on a text stream: a pretrained causal LM fine-tuned task by task through Avalanche.

    >>> cfg = resolve_config("text-v1", "ewc", "smollm2-135m", seed=0,
    ...                      overrides=["stream.n_train=50", "model.train_blocks=2"])
    >>> result = run(cfg)          # clbench.run.run dispatches text streams here
    >>> result.random_init_accuracy        # the "pretrained" row: accuracy before any training

The same Avalanche templates and plugins as the image runner (:mod:`clbench.run.runner`) train
the model: the stream's rows are packed token rows (:mod:`clbench.data.text_stream`) whose
targets are the answer tokens, the model's packed forward returns answer-slot logits
``[B, V, A]`` and the criterion is ``nn.CrossEntropyLoss()``, the mean answer-token loss, so
every baseline's own loss, penalty, distillation and replay code runs unchanged.

With ``keep_checkpoints`` (``--keep-checkpoints``) the trained part's parameters are kept after
each experience (:func:`trained_part_checkpoints`, :mod:`clbench.checkpoints`; the result's
``checkpoints`` block says ``"partial": "trained part"``): the frozen prefix is the same in
every checkpoint and is rebuilt from the model's weights, so a checkpoint of SmolLM2 with
``train_blocks=2`` holds 2 blocks and the final norm (7.1M parameters, ~28 MB), not 540 MB.

With a frozen prefix (``model.train_blocks`` < all) the model lists only its trained
parameters, so methods store state for those only, and a
:class:`~clbench.models.lm.PrefixCache` on the model computes the frozen blocks once per
distinct row for the whole run (training, scoring and prose).

Monosemanticity (``mono.when`` not ``off``): the final block's (``mono.layer`` to choose)
SAE codes and MLP neurons on the classification tasks' rows, before any training and after
the stream, in ``result.extra["mono_lm"]["before"]`` / ``["after"]`` (:mod:`clbench.run.text_mono`,
its cost there).

Scoring (after no training, then after each experience, every task): ``generate`` tasks by
greedy exact match at the token level (:func:`~clbench.data.text_stream.greedy_match`),
``choice`` tasks by the choices' summed log-likelihood (lm-evaluation-harness's ``acc``), the
prompt run once per example (:mod:`clbench.models.lm_choice`). The
first row is the pretrained model's (``b``, recorded as ``random_init_accuracy`` for the R-matrix
metrics: with a pretrained model FWT is transfer relative to the pretrained model). General
ability, as TRACE reports it (Wang et al. 2023): the perplexity of held-out KJV prose before any
training and after each experience; ``general_ppl_ratio`` is after / before. The pretrained
row and perplexity depend only on the model, the stream and the scoring set-up, so the runs of
one process score them once per :func:`pretrained_key` (a sweep's strategies of one seed share
them; the result says ``pretrained_row_reused``).
"""
from __future__ import annotations

import json
import time
import traceback
from typing import Any, Callable

import torch
from torch import nn

from clbench.checkpoints import CheckpointSet
from clbench.data.text_stream import (TextStream, boundary_tokens,
                                      choice_predictions, greedy_match, tokenize_text_v1)
from clbench.data.text_tasks import build_text_v1, holdout_text
from clbench.errors import ClbenchError
from clbench.metrics.cl import cl_metrics
from clbench.metrics.registry import metric
from clbench.models import create_model
from clbench.models.lm import CausalLMModel, PrefixCache
from clbench.models.lm_choice import shared_prompt_scores
from clbench.models.lm_score import perplexity
from clbench.results import RunResult
from clbench.run.config import RunConfig
from clbench.run.cost import PeakRSS, module_bytes, state_bytes, tensor_bytes
from clbench.run.fastdata import FastDataPlugin
from clbench.run.plugins import DivergedError, DivergenceGuard
from clbench.run.provenance import determinism_settings, provenance

Progress = Callable[[int, int], None]
#: tokens per prose window (each token scored once, windows do not overlap)
PROSE_WINDOW = 128
#: what a text run's checkpoint holds (the result's ``checkpoints.partial``)
TRAINED_PART = "trained part"


class TextScorer:
    """Scores a model on every task of a :class:`TextStream` (see the module docstring)."""

    def __init__(self, ts: TextStream, tokenizer: Any, batch_size: int) -> None:
        self.ts, self.tokenizer, self.batch_size = ts, tokenizer, batch_size
        self.boundary = boundary_tokens(tokenizer)
        self.prose = "\n".join(ts.v1.prose.passages)

    @torch.no_grad()
    def _batched(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(x), self.batch_size):
            logits = model(x[i:i + self.batch_size].to(device))
            out.append(fn(logits, y[i:i + self.batch_size].to(device)).cpu())
        return torch.cat(out)

    def accuracies(self, model: nn.Module) -> list[float]:
        """Accuracy on each task's test set, in stream order."""
        return [self.task_accuracy(model, e) for e in range(len(self.ts.kinds))]

    def task_accuracy(self, model: nn.Module, e: int) -> float:
        """Accuracy on task ``e``'s test set (the model's mode is restored)."""
        was = model.training
        model.eval()
        try:
            if self.ts.kinds[e] == "choice":
                cr = self.ts.choice_rows[e]
                assert cr is not None
                scores = shared_prompt_scores(model, cr.rows.x, cr.rows.y, cr.offsets,
                                              self.batch_size)
                return float((choice_predictions(scores, cr.offsets) == cr.gold).float().mean())
            s = self.ts.stream
            idx = s.test_idx[e]
            hits = self._batched(model, s.x_test[idx], s.y_test[idx],
                                 lambda lg, y: greedy_match(lg, y, self.boundary))
            return float(hits.float().mean())
        finally:
            model.train(was)

    def prose_perplexity(self, model: nn.Module) -> float:
        was = model.training
        model.eval()
        try:
            return perplexity(model, self.tokenizer, self.prose, window=PROSE_WINDOW,
                              stride=PROSE_WINDOW, batch_size=self.batch_size)
        finally:
            model.train(was)


def full_model_bytes(model: nn.Module) -> int:
    """Bytes of every parameter (frozen ones too) and buffer of the model."""
    params = (model.all_named_parameters() if isinstance(model, CausalLMModel)
              else model.named_parameters())
    return sum(tensor_bytes(p) for _, p in params) + sum(tensor_bytes(b) for b in model.buffers())


def build_text_run(cfg: RunConfig) -> tuple[CausalLMModel, TextStream]:
    """The model (loaded, its tokenizer attached) and the stream tokenized for it."""
    t = cfg.train
    v1 = build_text_v1(cfg.seed, n_train=t["stream.n_train"], n_test=t["stream.n_test"],
                       n_prose=t["stream.n_prose"], data_root=cfg.data_root)
    if t.get("validation", 0.0) > 0:     # tuning: a part of the training examples as "test"
        v1 = holdout_text(v1, t["validation"], cfg.seed)
    model = create_model(cfg.model, input_shape=(3, t["stream.max_len"]), n_classes=1,
                         **cfg.model_params)
    if not isinstance(model, CausalLMModel):
        raise ClbenchError(f"model {cfg.model!r} is not a causal language model")
    ts = tokenize_text_v1(v1, model.tokenizer, max_len=t["stream.max_len"],
                          tokenizer_id=model.fingerprint)
    model.answer_width = int(ts.stream.y_train.shape[1])
    if model.prefix_frozen:
        model.prefix_cache = PrefixCache(model, shared=True)
    return model, ts


def trained_part_checkpoints(model: CausalLMModel) -> CheckpointSet:
    """The checkpoints a text run keeps: after each experience, the trained part only (its
    ``trainable_parameter_names()``), with the trained part's hook layers
    (:meth:`~clbench.models.lm.CausalLMModel.trained_layers`), marked ``"trained part"``."""
    return CheckpointSet(model.trained_layers(), names=model.trainable_parameter_names(),
                         partial=TRAINED_PART)


def warm_prefix(model: CausalLMModel, ts: TextStream, batch_size: int) -> dict[str, Any]:
    """Compute the frozen prefix of every training and scoring row before anything is timed.

    Runs of one process share prefix states (:class:`PrefixCache`, ``shared``), so without this
    the first run of a sweep would pay the prefix in its training and scoring seconds and later
    runs would not; warmed up front, ``train_seconds`` and ``eval_seconds`` time the trained part
    only, alike in every run, and the prefix's own cost is recorded apart. States saved by an
    earlier process (:mod:`clbench.models.prefix_store`) are loaded first (``rows_loaded``), and
    when rows had to be computed the whole store is saved again for the next process."""
    cache = model.prefix_cache
    if cache is None:
        return {"seconds": 0.0, "rows_computed": 0, "rows_held": 0, "rows_loaded": 0}
    t0 = time.perf_counter()
    loaded = cache.load_disk()
    before = cache.computed
    device = model.lm.model.embed_tokens.weight.device
    s = ts.stream
    # a choice task is scored on its choice rows only; its gold test rows are never read
    scored = [s.x_test[s.test_idx[e]] for e, kind in enumerate(ts.kinds) if kind != "choice"]
    rows = [s.x_train, *scored] + [cr.rows.x for cr in ts.choice_rows if cr is not None]
    for x in rows:
        cache.warm(x.to(device), batch_size)
    computed = cache.computed - before
    if computed:
        cache.save_disk()
    return {"seconds": time.perf_counter() - t0, "rows_computed": computed,
            "rows_held": len(cache), "rows_loaded": loaded}


#: the pretrained row, perplexity and scoring seconds of each :func:`pretrained_key` scored here
_PRETRAINED: dict[tuple[Any, ...], tuple[list[float], float, float]] = {}


def pretrained_key(model: CausalLMModel, ts: TextStream, train: dict[str, Any]
                   ) -> tuple[Any, ...] | None:
    """What the scores of the untrained model depend on: its weights and trained part, the
    tokenized stream (tasks, split, prose), the scoring batch, device and thread count (float
    rounding); None for a model without a weights fingerprint (never shared)."""
    if not model.fingerprint:
        return None
    return (model.fingerprint, json.dumps(model.describe(), sort_keys=True, default=str),
            ts.stream.fingerprint, ts.v1.fingerprint, int(train["eval_batch_size"]),
            str(train.get("device", "cpu")), torch.get_num_threads())


def run_text(cfg: RunConfig, progress: Progress | None = None,
             extra_plugins: list[Any] | None = None, *, experiences: int | None = None,
             score: bool = True) -> RunResult:
    """Train and score one configuration on a text stream (module docstring).

    For benchmarks (``ci/bench_lm.py``): ``experiences`` trains only the first ones and
    ``score=False`` skips every scoring pass (the R matrix and perplexities are then empty and
    the result has no metrics)."""
    from clbench.run.runner import make_strategy, method_record, seed_everything

    seed_everything(cfg.seed)
    model, ts = build_text_run(cfg)
    stream, train = ts.stream, cfg.train
    model.to(train.get("device", "cpu"))
    strategy, specs, method_plugins, bridge = make_strategy(cfg, model, stream, extra_plugins, [],
                                                            extras={"text_stream": ts})
    scorer = TextScorer(ts, model.tokenizer, train["eval_batch_size"])
    ckpts = trained_part_checkpoints(model) if cfg.keep_checkpoints else None
    prefix = warm_prefix(model, ts, train["eval_batch_size"])
    bm = bridge.benchmark()
    offline = any(s.offline for s in specs)
    per_exp: list[dict[str, Any]] = []
    R: list[list[float]] = []
    b: list[float] = []
    ppl: list[float] = []
    t_eval0: float | None = None
    status, error = "ok", None

    def evaluate() -> tuple[list[float], float, float]:
        if not score:
            return [], float("nan"), 0.0
        t0 = time.perf_counter()
        row = scorer.accuracies(strategy.model)
        p = scorer.prose_perplexity(strategy.model)
        return row, p, time.perf_counter() - t0

    mono_on = score and cfg.mono["when"] != "off"
    mono_layer = cfg.mono["layer"] or f"block{model.n_layers - 1}"
    mono: dict[str, Any] = {}

    def measure_mono() -> dict[str, Any]:
        from clbench.data.text_classes import RowClasses
        from clbench.run.text_mono import text_mono

        return text_mono(strategy.model, ts, RowClasses.of(ts), mono_layer, cfg.mono, cfg.seed)

    key = pretrained_key(model, ts, train) if score else None
    reused = key is not None and key in _PRETRAINED
    with PeakRSS() as rss:
        try:
            if reused:
                b0, p0, t_eval0 = _PRETRAINED[key]  # type: ignore[index]
                b = list(b0)
            else:
                b, p0, t_eval0 = evaluate()
                if key is not None:
                    _PRETRAINED[key] = (list(b), p0, t_eval0)
            ppl.append(p0)
            if mono_on:
                mono["before"] = measure_mono()
            steps = [bm.train_stream] if offline else list(bm.train_stream)[:experiences]
            for i, exp in enumerate(steps):
                t0 = time.perf_counter()
                strategy.train(exp, eval_streams=[])
                t_train = time.perf_counter() - t0
                sb = state_bytes(strategy, stream.nbytes_per_sample(),
                                 skip_plugins=(FastDataPlugin, DivergenceGuard))
                row, p, t_eval = evaluate()
                R.append(row)
                ppl.append(p)
                n_tok = int(stream.x_train[stream.train_idx[i] if not offline else
                                           torch.cat(stream.train_idx)][:, 1].sum())
                entry: dict[str, Any] = {
                    "state_bytes": sb.total, "state_bytes_by_kind": sb.by_kind,
                    "train_seconds": t_train, "eval_seconds": t_eval, "general_ppl": p,
                    "train_tokens": n_tok * train["epochs"],
                    "prefix_cache_bytes": model.prefix_cache.nbytes if model.prefix_cache else 0}
                if record := method_record(method_plugins):
                    entry["method"] = record
                per_exp.append(entry)
                if ckpts is not None:
                    ckpts.add(i, strategy.model)
                if progress:
                    progress(i + 1, len(steps))
            if mono_on:
                mono["after"] = measure_mono()
        except DivergedError as e:
            status, error = "failed", str(e)
        except Exception as e:  # a bug in a method must not stop a sweep; keep the trace
            status, error = "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"

    metrics: dict[str, dict[str, Any]] = {}
    if status == "ok" and score:
        values: dict[str, Any] = dict(cl_metrics(R, b))
        train_s = sum(p["train_seconds"] for p in per_exp)
        values.update({
            "state_bytes": max(p["state_bytes"] for p in per_exp),
            "model_bytes": full_model_bytes(strategy.model), "peak_rss_bytes": rss.peak,
            "train_seconds": train_s, "eval_seconds": sum(p["eval_seconds"] for p in per_exp),
            "general_ppl_before": ppl[0], "general_ppl_after": ppl[-1],
            "general_ppl_ratio": ppl[-1] / ppl[0],
            "tokens_per_second": sum(p["train_tokens"] for p in per_exp) / max(train_s, 1e-9)})
        metrics = {name: metric(name).entry(float(v)) for name, v in values.items()}
    prov = provenance(cfg.seed)
    prov["determinism"] = determinism_settings()
    result = RunResult(
        config=cfg.to_dict(),
        stream={"name": stream.name, "version": stream.version, "fingerprint": stream.fingerprint,
                "scenario": stream.scenario, "n_experiences": stream.n_experiences,
                "classes_per_exp": stream.classes_per_exp,   # answer token ids (LwF's units)
                "tasks": ts.task_names, "kinds": ts.kinds,
                "text_fingerprint": ts.v1.fingerprint},
        accuracy_matrix=R, random_init_accuracy=b, metrics=metrics, per_experience=per_exp,
        provenance=prov, status=status, error=error, flags=[],
        checkpoints=ckpts if status == "ok" else None)
    result.extra["model"] = {**model.describe(), "trainable_bytes": module_bytes(model)}
    result.extra["general_ppl"] = ppl
    result.extra["pretrained_eval_seconds"] = t_eval0
    result.extra["pretrained_row_reused"] = reused
    result.extra["prefix"] = prefix   # the frozen prefix's states, computed before timing
    if mono:   # the hooked block's SAE codes and MLP neurons, before and after the stream
        result.extra["mono_lm"] = {"layer": mono_layer, "pool": "prompt_end",
                                   "settings": dict(cfg.mono), **mono}
    return result
