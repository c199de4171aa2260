"""A pretrained SAE for a language model: fitted once on general text at one layer, then frozen.

    $ clbench sae fit --model smollm2-135m --layer block28          # KJV + glosses, all tokens
    >>> fitted = fit_lm_sae(model, tokenizer, corpus, LMSAESettings(layer="block28"))
    >>> fitted.path, fitted.meta["quality"]["corpus_heldout"]["fvu"]      # doctest: +SKIP

**Activations.** Every real token position of every corpus text (no pooling: seed 001 fits its
SAE on token activations) at ``layer``, the residual stream a decoder block writes, from the
pretrained model: texts are tokenized to at most ``max_len`` tokens, run in batches of
``batch_texts`` with the forward stopped at the layer, and their real positions appended until
``max_tokens`` are held. Memory is bounded by that buffer: ``max_tokens x d x 4`` bytes (100k
tokens of SmolLM2's d = 576: 230 MB) plus one batch. The texts are put in a seeded random order
first (``seed``); the last ``heldout`` fraction of that order is kept out of the fit and scores
it, and the fit's buffer fills from the front of the rest, so both hold both sources (version 1
split the corpus as stored, KJV first: its cap filled with KJV tokens alone and its held-out
part was glosses alone). The record counts each source's texts in the fit (those whose tokens
entered the buffer) and in the held-out part.

**The SAE.** :class:`~clbench.sae.topk.TopKSAE` with AuxK and unit-norm decoder columns, trained by
:func:`~clbench.sae.train.train_sae` (``n_latents = expansion x d``, ``k``, ``steps`` of
``batch_size`` tokens, Adam at the Gao et al. 2024 learning rate for that width).
sae-lens's trainer is not used: it needs TransformerLens hooks around the model and its own
activation store, where clbench already has a TopK trainer (with AuxK, decoder
renormalisation and the same quality measures) that the MLP methods use.

**Provenance and reuse.** The SAE is written to ``sae.pt`` (:meth:`SAEBase.save`) beside
``sae.json``, which holds its fingerprint (sha256 over the model's weights fingerprint, the layer,
the corpus fingerprint and every setting), the settings, the corpus counts and fingerprint, and
its quality (:func:`~clbench.sae.quality.sae_quality`: FVU, L0, dead and dense fractions) on the
held-out corpus tokens and on each ``text-v1`` task's training rows (seed 0, the stream's default
sizes; every real token of prompt and answer). By default both go to
``$CLBENCH_CACHE/sae/<fingerprint[:20]>/``; a second fit with the same fingerprint reuses them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from clbench.atomic import write_text_atomic
from clbench.cache import cache_root
from clbench.data.base import sha256_of
from clbench.data.sae_corpus import SAECorpus
from clbench.errors import ClbenchError
from clbench.sae.capture import hook_module
from clbench.sae.quality import sae_quality
from clbench.sae.topk import TopKSAE
from clbench.sae.train import SAETrainConfig, train_sae

#: bump when the activations or the fit change meaning
LM_SAE_VERSION = "2"   # 2: the corpus in a seeded order before the held-out split and the cap
#: task name -> ``(ids [N, T], mask [N, T])`` of its rows
TaskRows = dict[str, tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class LMSAESettings:
    """What an LM SAE fit depends on besides the model and the corpus (module docstring)."""

    layer: str
    expansion: int = 8
    k: int = 32
    steps: int = 2000
    batch_size: int = 1024
    max_tokens: int = 100_000
    max_len: int = 128
    batch_texts: int = 16
    heldout: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("expansion", "k", "steps", "batch_size", "max_tokens", "max_len",
                     "batch_texts"):
            if getattr(self, name) < 1:
                raise ClbenchError(f"SAE fit: {name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.heldout < 1.0:
            raise ClbenchError(f"SAE fit: heldout must lie in (0, 1), got {self.heldout}")


@dataclass
class FittedLMSAE:
    sae: TopKSAE
    path: Path
    meta: dict[str, Any]
    reused: bool


def sae_cache_root() -> Path:
    return cache_root() / "sae"


def fit_fingerprint(model_fingerprint: str, corpus: SAECorpus, s: LMSAESettings) -> str:
    """sha256 over what the fitted SAE depends on (module docstring)."""
    return "sha256:" + sha256_of(LM_SAE_VERSION.encode(), model_fingerprint.encode(),
                                 corpus.fingerprint.encode(),
                                 json.dumps(asdict(s), sort_keys=True).encode())


@torch.no_grad()
def token_activations(model: Any, layer: str, ids: Tensor, mask: Tensor, *,
                      batch: int = 16, max_tokens: int | None = None) -> Tensor:
    """``[n_tokens, d]``: ``layer``'s output at every real position of the rows ``ids [N, T]``
    (``mask`` marks real tokens), in row order, at most ``max_tokens`` of them."""
    module = hook_module(model, layer)
    got: list[Tensor] = []

    class _Stop(Exception):
        pass

    def hook(_m: Any, _inp: Any, out: Any) -> None:
        got.append(out[0] if isinstance(out, tuple) else out)
        raise _Stop

    was = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    device = model.lm.model.embed_tokens.weight.device
    out: list[Tensor] = []
    held = 0
    try:
        for start in range(0, len(ids), batch):
            b_ids, b_mask = ids[start:start + batch].to(device), mask[start:start + batch].to(device)
            try:
                model.forward_features(b_ids, b_mask)
            except _Stop:
                pass
            h = got.pop()[b_mask.bool()].float().cpu()
            if max_tokens is not None and held + len(h) > max_tokens:
                h = h[:max_tokens - held]
            out.append(h)
            held += len(h)
            if max_tokens is not None and held >= max_tokens:
                break
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.feature_dim)


def tokenize_texts(tokenizer: Any, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
    """Texts -> right-padded ``ids [N, T]`` and ``mask [N, T]``, each cut to ``max_len`` tokens."""
    from clbench.models.lm_score import pad_rows

    rows = [tokenizer(t)["input_ids"][:max_len] for t in texts]
    rows = [r for r in rows if r]
    if not rows:
        raise ClbenchError("SAE fit: the corpus tokenized to nothing")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return pad_rows(rows, int(pad or 0))


def source_counts(corpus: SAECorpus, order: Tensor) -> Callable[[int, int], dict[str, int]]:
    """``span(a, b)``: texts of each source at positions ``a..b-1`` of ``order`` (the corpus
    holds its sources one after another, in ``corpus.counts`` order)."""
    bounds, at = [], 0
    for name, n in corpus.counts.items():
        bounds.append((name, at, at + n))
        at += n

    def span(a: int, b: int) -> dict[str, int]:
        part = order[a:b]
        return {name: int(((part >= lo) & (part < hi)).sum()) for name, lo, hi in bounds}

    return span


def fit_lm_sae(model: Any, tokenizer: Any, corpus: SAECorpus, s: LMSAESettings, *,
               out_dir: Path | None = None, task_rows: TaskRows | Callable[[], TaskRows] | None = None,
               log: Callable[[str], None] = lambda _m: None) -> FittedLMSAE:
    """Fit (or reuse) the SAE of ``model`` at ``s.layer`` on ``corpus`` (module docstring).

    ``task_rows``: name -> ``(ids, mask)`` of each task's rows, scored for the quality record
    (or a function returning them, called only when the SAE is fitted, not when reused)."""
    if s.layer not in getattr(model, "hook_layers", {}):
        raise ClbenchError(f"SAE fit: layer {s.layer!r} is not a hook layer of the model; "
                           f"choose one of block0..block{model.n_layers - 1} or norm")
    fp = fit_fingerprint(model.fingerprint, corpus, s)
    out_dir = out_dir or sae_cache_root() / fp.split(":")[1][:20]
    sae_file, meta_file = out_dir / "sae.pt", out_dir / "sae.json"
    if meta_file.is_file() and sae_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("fingerprint") == fp:
            log(f"reusing the SAE fitted before with these settings: {sae_file}")
            return FittedLMSAE(TopKSAE.load(sae_file), sae_file, meta, reused=True)
    t0 = time.perf_counter()
    n_fit = max(1, int(round(len(corpus.texts) * (1.0 - s.heldout))))
    if n_fit >= len(corpus.texts):
        raise ClbenchError(f"SAE fit: {len(corpus.texts)} corpus texts leave none held out; "
                           "give a larger corpus")
    order = torch.randperm(len(corpus.texts), generator=torch.Generator().manual_seed(s.seed))
    texts = [corpus.texts[int(i)] for i in order]
    ids, mask = tokenize_texts(tokenizer, texts, s.max_len)
    log(f"activations at {s.layer}: {n_fit} texts for the fit, {len(ids) - n_fit} held out")
    acts = token_activations(model, s.layer, ids[:n_fit], mask[:n_fit], batch=s.batch_texts,
                             max_tokens=s.max_tokens)
    held = token_activations(model, s.layer, ids[n_fit:], mask[n_fit:], batch=s.batch_texts,
                             max_tokens=s.max_tokens)
    entered = int((mask[:n_fit].sum(dim=1).cumsum(0) - mask[:n_fit].sum(dim=1) < len(acts)).sum())
    sources = source_counts(corpus, order)
    t_acts = time.perf_counter() - t0
    d = acts.shape[1]
    cfg = SAETrainConfig(n_latents=s.expansion * d, k=min(s.k, d), steps=s.steps,
                         batch_size=min(s.batch_size, len(acts)), seed=s.seed)
    log(f"training a TopK SAE {d} -> {cfg.n_latents} (k {cfg.k}) on {len(acts)} tokens, "
        f"{s.steps} steps")
    sae, stats = train_sae(acts, cfg, kind="topk")
    assert isinstance(sae, TopKSAE)
    sae.eval().requires_grad_(False)
    quality = {"corpus_fit": sae_quality(sae, acts), "corpus_heldout": sae_quality(sae, held)}
    for name, (t_ids, t_mask) in ((task_rows() if callable(task_rows) else task_rows)
                                  or {}).items():
        quality[f"task:{name}"] = sae_quality(
            sae, token_activations(model, s.layer, t_ids, t_mask, batch=s.batch_texts))
    meta = {"fingerprint": fp, "version": LM_SAE_VERSION, "layer": s.layer,
            "model": {"fingerprint": model.fingerprint, "source": getattr(model, "source", "")},
            "corpus": {"fingerprint": corpus.fingerprint, "counts": corpus.counts,
                       "texts_fit": n_fit, "texts_heldout": len(corpus.texts) - n_fit,
                       "sources_fit": sources(0, entered),
                       "sources_heldout": sources(n_fit, len(corpus.texts))},
            "settings": asdict(s), "sae": sae.config(),
            "tokens": {"fit": len(acts), "heldout": len(held)},
            "quality": quality,
            "seconds": {"activations": t_acts, "train": float(stats.get("train_seconds", float("nan"))),
                        "total": time.perf_counter() - t0},
            "memory_bytes": {"activation_buffer": acts.numel() * 4 + held.numel() * 4}}
    out_dir.mkdir(parents=True, exist_ok=True)
    sae.save(sae_file)
    write_text_atomic(meta_file, json.dumps(meta, indent=2) + "\n")   # last: marks it complete
    return FittedLMSAE(sae, sae_file, meta, reused=False)


def pretrained_sae(model: Any, settings: LMSAESettings, *, n_passages: int = 2000,
                   n_glosses: int = 2000, task_examples: int = 200,
                   data_root: str | Path | None = None, out_dir: Path | None = None,
                   log: Callable[[str], None] = lambda _m: None) -> FittedLMSAE:
    """The model's SAE at ``settings.layer`` on the default corpus (``n_passages`` KJV passages,
    ``n_glosses`` glosses: :func:`~clbench.data.sae_corpus.build_sae_corpus`), fitted once and
    reused by fingerprint; its quality is also scored on ``task_examples`` training rows of every
    ``text-v1`` task (seed 0). What ``clbench sae fit`` and ``sae-reg.sae_path=pretrained`` call."""
    from clbench.data.sae_corpus import build_sae_corpus
    from clbench.data.text_stream import tokenize_text_v1
    from clbench.data.text_tasks import build_text_v1

    corpus = build_sae_corpus(n_passages, n_glosses, data_root=data_root)

    def rows() -> TaskRows:   # built only for a new fit: a reused SAE keeps its record
        v1 = build_text_v1(0, n_train=task_examples, n_test=1, n_prose=1, data_root=data_root)
        ts = tokenize_text_v1(v1, model.tokenizer, max_len=settings.max_len,
                              tokenizer_id=model.fingerprint)
        return {name: (ts.stream.x_train[idx][:, 0], ts.stream.x_train[idx][:, 1])
                for name, idx in zip(ts.task_names, ts.stream.train_idx)}

    with torch.random.fork_rng(devices=[]):   # a run's own draws do not depend on the fit
        return fit_lm_sae(model, model.tokenizer, corpus, settings, out_dir=out_dir,
                          task_rows=rows, log=log)


__all__ = ["LM_SAE_VERSION", "LMSAESettings", "FittedLMSAE", "fit_fingerprint", "fit_lm_sae",
           "pretrained_sae", "source_counts", "sae_cache_root", "token_activations", "tokenize_texts"]
