"""Separability on the language model: seed 001's claim where the paper makes it, text-v1.

    python ci/separability.py --streams text-v1 --model smollm2-135m --seeds 0,1,2,3,4 \\
        --out leaderboard/separability-lm.md

:mod:`separability` (the MLP page) asks whether task identity is linearly separable in the SAE
basis and not in the weight basis on from-scratch MLPs; this module asks it of the paper's own
setting, a pretrained language model's representation of different tasks. It shares the probe,
the statistics and the page's tables with that module (:class:`separability.Layout`) and adds
what differs: the model, the rows, the bases at a token layer and a weight basis of millions of
dimensions.

**Model state.** ``pretrained`` (the default, the main rows): ``--model`` (``smollm2-135m``,
the text family's ``model.train_blocks`` = 2) as loaded, no training, i.e. the model the
pretrained SAE was fitted on and the one sae-reg's first experience starts from.
``naive``: the same after naive training over the whole stream (:func:`clbench.run.text.
run_text`, as the MLP page probes its model; one text-v1 training run per seed, minutes to
hours on a CPU). ``--lm-states pretrained,naive`` puts both on one page (Holm over both).
The model and stream come from :func:`clbench.run.text.build_text_run` with
``resolve_config("text-v1", "naive", model, seed, --set ...)``; its shared
:class:`~clbench.models.lm.PrefixCache` first loads the frozen prefix's states saved by earlier
processes (:mod:`clbench.models.prefix_store`), computes only the rows it lacks and saves them.

**Rows.** From each task ``e`` (6 tasks, all multiple-choice, chance 1/6)
``n = min(--rows, min_e |test_e|)`` test examples are drawn, seeded by the seed
(:func:`separability.probe_rows`), label ``e``. A row is the example's packed test row: prompt,
answer separator, gold answer, EOS (:mod:`clbench.data.text_stream`), the format of the training
rows, so its loss below is exactly the text runner's training loss. (The scorer reads choice
rows without EOS instead; those are for ranking choices, not a task's training signal.)

**Layer.** ``L`` = sae-reg's text default, :func:`clbench.models.default_layer` (for
SmolLM2 with 2 trained blocks: ``block28``, the first trained block), ``h_t [d]`` its
residual-stream output at real token ``t`` of the row (``d`` = 576), ``T`` real tokens.

**Bases** (each row becomes one vector in each; ``z = ReLU(TopK_k(W_enc (h - b_pre) +
b_enc))`` the SAE's code):

    SAE codes       mean_t z(h_t)                                                      [m]
                    the pretrained SAE (:func:`clbench.sae.lm_fit.pretrained_sae` with sae-reg's
                    text family settings: TopK, m = 8 d = 4608, k = 32, 2000 steps, on every
                    token of 2000 KJV passages + 2000 WordNet glosses in no task), reused by
                    fingerprint from ``$CLBENCH_CACHE/sae/`` (fitted there when missing: the same
                    SAE ``clbench sae fit`` and sae-reg use). Each token encoded, codes averaged
                    over real tokens: sae-reg's ``pool=codes``.
    SAE f           mean_t ReLU(W_enc (h_t - b_pre) + b_enc)                           [m]
                    the same SAE's pre-TopK feature activations, the ``f`` that sae-reg's
                    penalty reads (table only, no paired test)
    neurons         mean_t h_t                                                         [d]
    weights         S vec(d l(x, y) / d theta)                                         [m]
                    ``l(x, y) = -(1/|A|) sum_{a in A} log p(y_a | x_<a)``, the mean cross-entropy
                    of the row's answer tokens A (gold answer and EOS; the prompt is never a
                    target), ``theta`` every trained parameter (the top ``train_blocks`` blocks
                    and the final norm: D = 7,080,768 for SmolLM2, what EWC's Fisher is taken
                    over on text), one autograd pass per row, sketched by ``S`` below
    weights (pred)  the same at the model's own prediction: ``y^_a = argmax_v p(v | x_<a)``
                    (teacher-forced on the gold prefix), a Fisher at the model's prediction
                    needs no label
    random          mean_t of the codes of :func:`strategies.sae_reg.random_dictionary` (m
                    seeded random unit-norm directions, encoder = decoder, TopK k, ``b_pre`` the
                    geometric median of the probe rows' token activations): sae-reg's control

**The sketch** ``S [m, D]`` (:class:`SparseSketch`) is never materialised: a dense Gaussian
``P`` (the MLP page's) would be ``D x m`` = 7.1M x 4608 floats, 130 GB. ``S`` is the block
sparse Johnson-Lindenstrauss transform of Kane and Nelson (2014, "Sparser Johnson-Lindenstrauss
transforms", J. ACM 61(1), block construction): the ``m`` rows are cut into ``s`` blocks
(``--sketch-nnz``, default 4); in block ``j`` each coordinate ``i`` has one bucket
``h_j(i)`` and one sign ``sigma_j(i) in {-1, +1}``, seeded, and

    (S g)_r = s^{-1/2} sum_j sum_{i : h_j(i) = r} sigma_j(i) g_i

so every column of ``S`` holds exactly ``s`` non-zeros ``+-1/sqrt(s)``, one per block; ``s = 1``
is the CountSketch of Charikar, Chen and Farach-Colton (2002, "Finding frequent items in data
streams", ICALP). Applying it costs ``O(s D)`` per row (an index-add), storing it ``s D`` bucket
indices and signs. Since ``E[sigma_j(i) sigma_j(i')] = 1[i = i']``,

    E <S g, S g'> = <g, g'>,   Var <S g, S g'> <= (||g||^2 ||g'||^2 + <g, g'>^2) / m

(each block is a CountSketch of width ``m / s`` scaled by ``s^{-1/2}``; the ``s`` blocks are
independent), the same order as a dense Gaussian's variance, and with ``s = Theta(eps^-1
log(1/delta))`` and ``m = Theta(eps^-2 log(1/delta))`` it keeps every norm within ``1 +- eps``
with probability ``1 - delta`` (Kane and Nelson, Theorem 1), as the Gaussian projection does
(Arriaga and Vempala 2006: a margin is approximately kept, never created). The sketched basis is
an approximation of the weight basis, not the weight basis itself.

**Cost** (1 CPU thread; a random-weight model of SmolLM2's shape, rows of 48 tokens): the
two gradients and their sketches of a row take about 0.2 CPU seconds (without the sketch 0.16:
the index-adds cost ~0.03 s per sketch at ``s = 4``), and the sketch's buckets and signs
``8 s D`` bytes (230 MB); the frozen prefix of a row not in the store, 28 blocks x ~4.4 ms.

**Probe and statistics**: :mod:`separability`'s (a seeded half of each task's rows trains a
standardised multinomial logistic regression, ``C = --C``; the sparse probe uses the
``--sparse-k`` features of largest ANOVA F; mean +- 95% t-interval over seeds; SAE codes against
weights, weights (pred), neurons and random by paired t-tests over seeds, Holm-corrected over
every test of the page). Records are cached as JSON per (state, seed) under
``--results/text-v1/<model>/<state>/``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import separability as sep  # noqa: E402

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.errors import ClbenchError  # noqa: E402
from clbench.models import default_layer  # noqa: E402
from clbench.models.lm import CausalLMModel  # noqa: E402
from clbench.run.config import resolve_config  # noqa: E402
from clbench.sae.capture import hook_module, raw_output  # noqa: E402
from clbench.sae.quality import sae_quality  # noqa: E402
from clbench.sae.topk import SAEBase  # noqa: E402
from clbench.strategies.sae_reg import SAERegConfig, random_dictionary  # noqa: E402

IGNORE = -100
#: the model states a page can probe (module docstring)
STATES = ("pretrained", "naive")
LAYOUT = sep.Layout(
    {"sae": "SAE codes (pretrained)", "sae_f": "SAE f (pre-TopK)", "neurons": "neurons h",
     "weights": "weights (grad, sketch)", "weights_pred": "weights (grad at y^, sketch)",
     "random": "random dictionary"},
    "sae", {"weights": "weights", "weights_pred": "weight gradients at y^",
            "neurons": "neurons", "random": "a random dictionary"}, unit="model states")
VERSION = 1


# ------------------------------------------------------------------ the sketch

class SparseSketch:
    """``g [..., D] -> S g [..., width]``: the seeded block sparse JL transform of the module
    docstring (``nnz`` = ``s`` non-zeros ``+-1/sqrt(s)`` per column, one per block of rows).

    >>> s = SparseSketch(10, 6, seed=0, nnz=2)
    >>> s.matrix().shape, int((s.matrix() != 0).sum(0).min())
    (torch.Size([6, 10]), 2)
    """

    def __init__(self, dim: int, width: int, seed: int, nnz: int = 4) -> None:
        if not 1 <= nnz <= width:
            raise ClbenchError(f"--sketch-nnz must be 1..{width} (the sketch width); got {nnz}")
        self.dim, self.width, self.nnz = dim, width, nnz
        gen = torch.Generator().manual_seed(seed)
        edges = [j * width // nnz for j in range(nnz + 1)]
        #: ``[nnz, D]``: coordinate i's bucket in block j (int32: 4 bytes each)
        self.buckets = torch.stack([torch.randint(lo, hi, (dim,), generator=gen, dtype=torch.int32)
                                    for lo, hi in zip(edges[:-1], edges[1:])])
        #: ``[nnz, D]``: its sign, times ``1/sqrt(nnz)``
        self.signs = (torch.randint(0, 2, (nnz, dim), generator=gen).float() * 2 - 1) / nnz ** 0.5

    def __call__(self, g: Tensor) -> Tensor:
        """``S g`` for ``g [D]`` or ``[B, D]``."""
        if g.shape[-1] != self.dim or g.dim() > 2:
            raise ValueError(f"the sketch takes [{self.dim}] or [B, {self.dim}], got {tuple(g.shape)}")
        out = self._apply([g.reshape(-1, self.dim)])
        return out if g.dim() == 2 else out[0]

    def parts(self, parts: Sequence[Tensor]) -> Tensor:
        """``S cat(vec(p) for p in parts)`` ``[width]``: one vector given in pieces of any shape
        (a gradient per parameter), never concatenated."""
        return self._apply([p.reshape(1, -1) for p in parts])[0]

    def _apply(self, blocks: list[Tensor]) -> Tensor:
        """``S`` applied to the row-wise concatenation of ``blocks`` (each ``[B, D_p]``)."""
        total = sum(b.shape[1] for b in blocks)
        if total != self.dim:
            raise ValueError(f"the pieces hold {total} numbers; the sketch takes {self.dim}")
        out = torch.zeros(blocks[0].shape[0], self.width, dtype=torch.float32)
        at = 0
        for b in blocks:
            v, n = b.detach().float().cpu(), b.shape[1]
            for j in range(self.nnz):
                idx, sign = self.buckets[j, at:at + n], self.signs[j, at:at + n]
                for r in range(len(v)):    # one row at a time: index_add along dim 0 is ~15x faster
                    out[r].index_add_(0, idx, v[r] * sign)
            at += n
        return out

    def matrix(self) -> Tensor:
        """``S`` itself ``[width, D]`` (for a small ``D``: tests and examples)."""
        return self(torch.eye(self.dim)).T

    @property
    def nbytes(self) -> int:
        return self.buckets.numel() * 4 + self.signs.numel() * 4


# ------------------------------------------------------------------ the bases of one model

def trained_params(model: CausalLMModel) -> list[tuple[str, Tensor]]:
    """The parameters that train (the weight basis's theta), in ``named_parameters`` order."""
    named = dict(model.all_named_parameters())
    return [(n, named[n]) for n in model.trainable_parameter_names()]


def row_features(model: CausalLMModel, layer: str, x: Tensor, y: Tensor,
                 grad_fn: Callable[[Sequence[Tensor]], Tensor]) -> dict[str, Any]:
    """One pass per packed row ``x [N, 3, T]`` (answers ``y [N, A]``) through the model's
    packed forward (its prefix cache): ``tokens`` (list of ``[T_n, d]`` activations of
    ``layer`` at the real tokens), ``weights`` / ``weights_pred`` ``[N, m]`` (``grad_fn`` of the
    per-parameter gradients of the answer loss at ``y`` and at the model's argmax)."""
    module = hook_module(model, layer)
    got: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: got.append(raw_output(out)))
    params = [p for _, p in trained_params(model)]
    was = model.training
    model.eval()
    tokens, g_y, g_pred = [], [], []
    try:
        with torch.enable_grad():
            for n in range(len(x)):
                width = int(x[n, 1].sum())
                xi, yi = x[n:n + 1, :, :width], y[n:n + 1]
                if bool(x[n, 1, width:].any()) or not bool(x[n, 1, :width].all()):
                    raise ClbenchError("separability: rows must be right-padded")
                logits = model(xi)                                    # [1, V, A]
                if not got:
                    raise ClbenchError(f"layer {layer!r} did not run on the trained path; hook "
                                       "a trained block")
                tokens.append(got.pop()[0].detach().float().cpu())   # [T, d]
                got.clear()
                pred = torch.where(yi != IGNORE, logits.argmax(dim=1), IGNORE)
                loss = F.cross_entropy(logits, yi, ignore_index=IGNORE)
                loss_pred = F.cross_entropy(logits, pred, ignore_index=IGNORE)
                g_y.append(grad_fn(torch.autograd.grad(loss, params, retain_graph=True)))
                g_pred.append(grad_fn(torch.autograd.grad(loss_pred, params)))
    finally:
        handle.remove()
        model.train(was)
    return {"tokens": tokens, "weights": torch.stack(g_y), "weights_pred": torch.stack(g_pred)}


@torch.no_grad()
def token_bases(tokens: list[Tensor], sae: SAEBase, rand: SAEBase) -> dict[str, Tensor]:
    """The bases read from each row's token activations ``[T_n, d]`` (module docstring)."""
    out: dict[str, list[Tensor]] = {"sae": [], "sae_f": [], "neurons": [], "random": []}
    for h in tokens:
        out["sae"].append(sae.encode(h).mean(0))
        out["sae_f"].append(F.relu(sae.pre_activations(h)).mean(0))
        out["neurons"].append(h.mean(0))
        out["random"].append(rand.encode(h).mean(0))
    return {k: torch.stack(v) for k, v in out.items()}


# ------------------------------------------------------------------ one (state, seed)

def lm_sae(model: CausalLMModel, layer: str, s: dict[str, Any], data_root: str | None) -> Any:
    """The pretrained SAE sae-reg uses at ``layer`` (fitted once, then reused by fingerprint)."""
    from clbench.sae.lm_fit import LMSAESettings, pretrained_sae

    return pretrained_sae(model, LMSAESettings(layer=layer, expansion=s["expansion"], k=s["k"],
                                               steps=s["sae_steps"]),
                          n_passages=s["corpus_passages"], n_glosses=s["corpus_glosses"],
                          task_examples=min(200, s["n_train"]), data_root=data_root,
                          log=lambda m: print(f"separability: {m}", file=sys.stderr, flush=True))


def warm_rows(model: CausalLMModel, x: Tensor) -> dict[str, int]:
    """Load the saved prefix states, compute those of ``x`` not held, save when any were."""
    cache = model.prefix_cache
    if cache is None:
        return {"rows_loaded": 0, "rows_computed": 0}
    loaded, before = cache.load_disk(), cache.computed
    cache.warm(x, 32)
    computed = cache.computed - before
    if computed:
        cache.save_disk()
    return {"rows_loaded": loaded, "rows_computed": computed}


def measure(state: str, seed: int, s: dict[str, Any], data_root: str | None) -> dict[str, Any]:
    """Probe every basis of one model state and seed (module docstring); the JSON record."""
    from clbench.run.text import build_text_run, run_text

    t0 = time.perf_counter()
    cfg = resolve_config("text-v1", "naive", s["model"], seed=seed, data_root=data_root,
                         overrides=list(s["set"]))
    torch.manual_seed(seed)
    model, ts = build_text_run(cfg)
    layer = default_layer(model)
    fitted = lm_sae(model, layer, s, data_root)        # on the pretrained weights
    t_train = 0.0
    if state == "naive":
        keep = sep.KeepModel()
        result = run_text(cfg, extra_plugins=[keep])
        if result.status != "ok" or keep.model is None:
            raise RuntimeError(f"text-v1 seed {seed}: naive training failed: {result.error}")
        model, t_train = keep.model, time.perf_counter() - t0
    x, y, task = sep.probe_rows(ts.stream, s["rows"], seed)
    prefix = warm_rows(model, x)
    t_bases = time.perf_counter()
    named = trained_params(model)
    dim = sum(p.numel() for _, p in named)
    width = fitted.sae.n_latents
    sketch = SparseSketch(dim, width, seed=1_000_003 + seed, nnz=s["sketch_nnz"])
    rows = row_features(model, layer, x, y, sketch.parts)
    acts = torch.cat(rows["tokens"])
    rand = random_dictionary(acts, width, s["k"], seed)
    feats = {**token_bases(rows["tokens"], fitted.sae, rand),
             "weights": rows["weights"], "weights_pred": rows["weights_pred"]}
    train, test = sep.probe_split(task, seed)
    probes = {p: {b: sep.probe_accuracy(feats[b].double().numpy(), task, train, test, c=s["C"],
                                        k=s["sparse_k"] if p == "sparse" else 0)
                  for b in LAYOUT.bases}
              for p in sep.PROBES}
    return {"settings": s, "stream": "text-v1", "state": state, "seed": seed, "layer": layer,
            "n_experiences": ts.stream.n_experiences, "tasks": ts.task_names,
            "rows_per_experience": len(x) // ts.stream.n_experiences,
            "tokens_per_row": float(acts.shape[0] / len(x)), "d": int(acts.shape[1]),
            "width": width, "param_dim": dim, "sketch_bytes": sketch.nbytes,
            "widths": {b: int(f.shape[1]) for b, f in feats.items()},
            "sae": {"fingerprint": fitted.meta["fingerprint"], "reused": fitted.reused,
                    "heldout_fvu": fitted.meta["quality"]["corpus_heldout"]["fvu"]},
            "fvu": {"sae": sae_quality(fitted.sae, acts)["fvu"], "random": sae_quality(rand, acts)["fvu"]},
            "probe": probes, "prefix": prefix,
            "seconds": {"train": t_train, "bases": time.perf_counter() - t_bases,
                        "total": time.perf_counter() - t0}}


# ------------------------------------------------------------------ the page

def label(state: str) -> str:
    """The page's name of a model state's rows (a stream column of the shared tables)."""
    return "text-v1" if state == "pretrained" else f"text-v1 ({state})"


def render(recs: dict[str, list[dict]], cmd: str) -> str:
    """The Markdown page: header, accuracy tables, paired tests, findings."""
    tests = sep.comparisons(recs, LAYOUT)
    r0 = next(iter(recs.values()))[0]
    s = r0["settings"]
    seeds = sorted({r["seed"] for rs in recs.values() for r in rs})
    lines = [
        "# Is task identity linearly separable in the SAE basis but not in the weight basis? "
        "(language model)", "",
        f"Made by `{cmd}` (seed 001: Ning et al., arXiv 2606.26629; method in "
        f"ci/separability_lm.py's docstring). Model {s['model']} (overrides: "
        f"{' '.join(s['set']) or 'none'}), hook layer {r0['layer']}; rows = each task's test "
        f"examples (prompt, gold answer, EOS), label = task, chance 1/{r0['n_experiences']}; "
        f"features = the mean over a row's real tokens. Probe = multinomial logistic regression on "
        f"standardised features (C = {s['C']}), trained on a seeded half of each task's rows, "
        f"accuracy on the other half; sparse probe = the same on the {s['sparse_k']} features of "
        f"largest ANOVA F. SAE: the pretrained one sae-reg uses (TopK, m = {s['expansion']} d, "
        f"k = {s['k']}, {s['sae_steps']} steps on {s['corpus_passages']} KJV passages + "
        f"{s['corpus_glosses']} glosses), codes = TopK codes, f = pre-TopK ReLU activations; "
        f"weights = per-sample gradient of the answer-token loss with respect to every trained "
        f"parameter (D numbers), block-sparse JL sketch to m ({s['sketch_nnz']} non-zeros per "
        f"column); at y^ = the same at the model's argmax tokens. Rows `text-v1` probe the "
        f"pretrained model; `text-v1 (naive)` the model after naive training over the stream. "
        f"Mean ± 95% t-interval over seeds {','.join(map(str, seeds))}, accuracy in %.", "",
        "## Probe accuracy, all features", "",
        "| stream | layer (d → m, D) | T (chance %) | rows / task | tokens / row | "
        + " | ".join(LAYOUT.bases.values()) + " | seeds |", "|---" * (6 + len(LAYOUT.bases)) + "|"]
    for name, rs in recs.items():
        r = rs[0]
        lines.append(f"| {name} | {r['layer']} ({r['d']} → {r['width']}, {r['param_dim']:,}) | "
                     f"{r['n_experiences']} ({100 / r['n_experiences']:.1f}) | "
                     f"{r['rows_per_experience']} | {np.mean([x['tokens_per_row'] for x in rs]):.1f} | "
                     + " | ".join(sep._cell(sep._acc(rs, "dense", b)) for b in LAYOUT.bases)
                     + f" | {len(rs)} |")
    lines += sep.sparse_table(recs, LAYOUT)
    lines += ["", "SAE FVU on the probe rows' token activations (mean over seeds): "
              + "; ".join(f"{name} pretrained SAE {np.mean([r['fvu']['sae'] for r in rs]):.2f}, "
                          f"random dictionary {np.mean([r['fvu']['random'] for r in rs]):.2f}"
                          for name, rs in recs.items())
              + f"; the SAE's own held-out corpus FVU {r0['sae']['heldout_fvu']:.2f} "
              f"(fingerprint {r0['sae']['fingerprint'][:19]}).", ""]
    return "\n".join(lines + sep.conclusions(recs, tests, LAYOUT)) + "\n"


def settings_of(a: Any) -> dict[str, Any]:
    """The record's settings (what a cached record must match) from the parsed arguments."""
    from clbench.sae.lm_fit import LMSAESettings

    text = LMSAESettings(layer="")
    d = SAERegConfig()
    cfg = resolve_config("text-v1", "naive", a.model, overrides=list(a.set))
    return {"version": VERSION, "model": a.model, "set": list(a.set), "rows": a.rows,
            "expansion": text.expansion, "k": text.k,
            "sae_steps": a.sae_steps if a.sae_steps is not None else text.steps,
            "corpus_passages": d.corpus_passages if a.corpus_passages is None else a.corpus_passages,
            "corpus_glosses": d.corpus_glosses if a.corpus_glosses is None else a.corpus_glosses,
            "n_train": int(cfg.train["stream.n_train"]), "sketch_nnz": a.sketch_nnz,
            "C": a.C, "sparse_k": a.sparse_k}


def check_states(text: str) -> list[str]:
    states = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in states if x not in STATES]
    if not states or bad:
        raise ClbenchError(f"--lm-states {text!r}: give some of {', '.join(STATES)}")
    return states


def main_lm(a: Any, seeds: list[int], cmd: str) -> int:
    """The LM page (:func:`separability.main` sends text streams here); exit status."""
    try:
        states = check_states(a.lm_states)
        if a.sketch_nnz < 1 or (a.corpus_passages or 0) < 0 or (a.corpus_glosses or 0) < 0:
            raise ClbenchError("--sketch-nnz must be >= 1, --corpus-passages/--corpus-glosses >= 0")
        settings = settings_of(a)
    except ClbenchError as e:
        print(f"separability: error: {e}", file=sys.stderr)
        return 2
    recs: dict[str, list[dict]] = {}
    for state in states:
        for seed in seeds:
            path = Path(a.results) / "text-v1" / a.model / state / f"seed{seed}.json"
            rec = None if a.no_resume else sep.cached(path, settings)
            if rec is None:
                try:
                    rec = measure(state, seed, settings, a.data_root)
                except ClbenchError as e:
                    print(f"separability: error: {e}", file=sys.stderr)
                    return 2
                write_text_atomic(path, json.dumps(rec, indent=1) + "\n")
                how = f"{rec['seconds']['total']:.0f}s"
            else:
                how = "cached"
            acc = " ".join(f"{b} {100 * v:.1f}" for b, v in rec["probe"]["dense"].items())
            print(f"separability: text-v1 {state} seed {seed} ({how}): probe % {acc}",
                  file=sys.stderr, flush=True)
            recs.setdefault(label(state), []).append(rec)
    text = render(recs, cmd)
    if a.out:
        write_text_atomic(a.out, text)
    print(text)
    return 0
