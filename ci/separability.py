"""Is task identity linearly separable in the SAE basis and not in the weight basis?

    python ci/separability.py --streams split-digits,split-mnist1d,split-fmnist --seeds 0,1,2,3,4 \\
        --out leaderboard/separability.md

Seed 001 (Ning, Xue, Lou and Guo, "From Weights to Features: SAE-Guided Activation
Regularization for LLM Continual Learning", arXiv 2606.26629, 2026) reports that "task-relevant
representations are linearly separable in the SAE feature basis but not in the weight basis".
The paper's protocol is not public; this script is our operationalisation, on clbench's streams
and models (an MLP on vision streams, not an LLM). The language model, the paper's own setting,
has its page from the same probe, statistics and tables (:class:`Layout`), made by
``--streams text-v1 --model smollm2-135m`` (``leaderboard/separability-lm.md``; its bases and
their sketched weight gradients in :mod:`separability_lm`'s docstring).

**Model.** For training seed ``s``, clbench trains ``--model`` (default ``mlp``, 400-400) with
strategy ``naive`` and ``mono.when=off`` through :func:`clbench.run.runner.run` (plus
``--set`` overrides); a plugin keeps the final ``strategy.model``. From each experience ``e``'s
test set ``n = min(--rows, min_e |test_e|)`` rows are drawn (seeded by ``s``), so the ``T``
classes of the probe are balanced; the label of a row is its experience id ``e`` (task
identity), chance ``1 / T``. ``L`` is :func:`clbench.models.default_layer` (``fc1``, ``d``
units), ``h(x) [d]`` its output (:func:`clbench.sae.capture.capture`).

**Bases** (each row of the probe becomes one vector in each):

    sae (all tasks)  z = ReLU(TopK_k(W_enc (h - b_pre) + b_enc))                     [m]
                     a TopK SAE (:func:`clbench.sae.fit.fit_layer_sae`, sae-reg's defaults:
                     m = expansion d = 2d, k = 16, 200 steps) fitted on h of at most
                     max_samples = 2000 seeded training rows of EVERY experience: a dictionary
                     that represents every task, as the paper's pretrained SAE would
    sae (task 0)     the same, fitted on experience 0's training rows only (sae-reg's CPU
                     regime; here on the final model, where sae-reg fits after experience 0)
    neurons          h itself                                                         [d]
    weights          P^T vec(dl(x, y)/dW_L), the per-sample gradient of the cross-entropy of
                     the model's logits against the row's class y, with respect to layer L's
                     weights and bias (D = d (d_in + 1) numbers; what EWC's Fisher
                     F = mean_n g_n^2 squares and averages), computed with torch.func
                     (vmap of grad over rows) and reduced by a seeded Gaussian projection
                     P [D, m], P_ij ~ N(0, 1/m)                                      [m]
    weights (pred)   the same at the model's predicted class y^ = argmax_c logits_c(x) instead
                     of y (a Fisher taken at the model's own prediction needs no label). In a
                     class-incremental split stream y alone gives the task away (a probe on
                     onehot(y) is exact), and the gradient at y carries it. Measured on
                     split-fmnist, seeds 0-1, C = 1, the probe reads 76-77% from the raw pixels,
                     68% from h, 86-90% from the gradient at y, 78-79% from the gradient at the
                     fixed class 0 and 50-58% from the gradient at y^ (C = 0.1 or 10 moves each
                     by at most 4 points). This basis is an addition to issue 13's list: it
                     shows how much of the weight basis's separability is the label.
    random           the codes of :func:`strategies.sae_reg.random_dictionary` (m seeded random
                     unit-norm directions, encoder = decoder, TopK k): what SAE training adds

The projection (Johnson-Lindenstrauss) keeps all pairwise distances of the ``N = T n`` points
within a factor ``1 +- eps`` with high probability once ``m >= 8 ln(N) / eps^2`` (``eps ~ 0.26``
for m = 800, N = 1000), and so keeps a linear separation with a margin approximately (Arriaga
and Vempala 2006, "An algorithmic theory of learning: robust concepts and random projection");
it does not create one. The projected basis is an approximation of the weight basis, not
the weight basis itself.

**Probe.** The rows of each experience are split in halves (a seeded permutation per
experience, seed ``s``); each feature is standardised with the training half's mean and
standard deviation, ``u = (v - mu) / sigma``, and a multinomial logistic regression
``p(e | u) = softmax(W u + b)_e``, fitted by minimising
``C sum_n -log p(e_n | u_n) + ||W||^2 / 2`` (scikit-learn, ``C = --C``, default 1), is scored
by its accuracy on the other half. The sparse probe is the same on the ``--sparse-k`` (8)
features with the largest ANOVA F statistic on the training half (for the projected weight basis
a coordinate is a random mixture, so its sparse probe says little).

**Statistics.** Mean +- 95% t-interval over seeds (:func:`clbench.board.rank.ci95`). SAE (all
tasks) against each other basis but SAE (task 0): paired t-test over seeds (a seed fixes the class
order, initialisation, rows and split for every basis), Holm-corrected over every test on the
page (:mod:`clbench.board.paired`); a difference needs Holm p < 0.05. A basis "separates"
tasks when its interval lies above chance. Each (stream, seed) is cached as JSON under
``--results`` (reused when its settings match, ``--no-resume`` to redo); files are written
atomically.

**Measured** (the command above, ``leaderboard/separability.md``): the claim holds on none of
the three streams. Every basis separates tasks above chance; the gradient at y is the most
separable (significantly above SAE codes on split-mnist1d and split-fmnist), the gradient at
y^ the least (below SAE codes on all 15 seeds, not significant after Holm); SAE codes are no
more separable than the neurons they encode, and above a random dictionary on split-digits
only.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.paired import holm, paired_test  # noqa: E402
from clbench.board.rank import ci95  # noqa: E402
from clbench.errors import ClbenchError  # noqa: E402
from clbench.models import default_layer  # noqa: E402
from clbench.run.config import resolve_config  # noqa: E402
from clbench.run.fastdata import sample_rows  # noqa: E402
from clbench.run.runner import run  # noqa: E402
from clbench.sae.capture import capture, hook_module  # noqa: E402
from clbench.sae.fit import fit_layer_sae  # noqa: E402
from clbench.sae.quality import sae_quality  # noqa: E402
from clbench.strategies.sae_reg import SAERegConfig, random_dictionary  # noqa: E402
from clbench.streams import STREAMS, Stream, build_stream  # noqa: E402

#: basis key -> table heading, in table order
BASES = {"sae_all": "SAE (all tasks)", "sae_exp0": "SAE (task 0)", "neurons": "neurons h",
         "weights": "weights (grad, JL)", "weights_pred": "weights (grad at y^, JL)",
         "random": "random dictionary"}
#: the paired comparisons: SAE (all tasks) against each of these
AGAINST = ("weights", "weights_pred", "neurons", "random")
PROBES = {"dense": "probe on all features", "sparse": "sparse probe"}


@dataclass(frozen=True)
class Layout:
    """What a page compares: ``bases`` (key -> table heading, in table order), ``ref`` (the SAE
    basis every paired test starts from), ``against`` (basis -> how the findings name it) and
    ``unit``, what a page's row sets are (streams; a language model's states)."""

    bases: dict[str, str]
    ref: str
    against: dict[str, str]
    unit: str = "streams"


#: the MLP page (this module); the language model's is ``separability_lm.LAYOUT``
MLP = Layout(BASES, "sae_all", {"weights": "weights", "weights_pred": "weight gradients at y^",
                                "neurons": "neurons", "random": "a random dictionary"})
assert tuple(MLP.against) == AGAINST
#: the most projection matrix bytes allowed (D x m float32)
MAX_PROJECTION_BYTES = 4 << 30
VERSION = 2


# ------------------------------------------------------------------ bases

def layer_params(model: nn.Module, layer: str) -> dict[str, Tensor]:
    """Layer ``layer``'s parameters, detached, keyed by their path in ``model``."""
    module = hook_module(model, layer)
    prefix = next(name for name, m in model.named_modules() if m is module)
    return {f"{prefix}.{n}" if prefix else n: p.detach() for n, p in module.named_parameters()}


def per_sample_grads(model: nn.Module, layer: str, x: Tensor, y: Tensor) -> Tensor:
    """``[B, D]``: row ``n`` is ``vec(d CE(model(x_n), y_n) / d theta_L)``, ``theta_L`` the
    parameters of ``layer`` in :func:`layer_params` order (vmap of grad, model as it is)."""
    params = layer_params(model, layer)

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[name].detach().reshape(len(x), -1) for name in params], dim=1)


def projection(dim: int, width: int, seed: int) -> Tensor:
    """A seeded Gaussian projection ``[dim, width]``, entries ``N(0, 1 / width)``."""
    if dim * width * 4 > MAX_PROJECTION_BYTES:
        raise ClbenchError(f"a {dim} x {width} projection needs {dim * width * 4 >> 20} MiB; "
                           f"hook a smaller layer")
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(dim, width, generator=gen) / math.sqrt(width)


def weight_basis(model: nn.Module, layer: str, x: Tensor, y: Tensor, width: int, seed: int,
                 batch: int = 128) -> Tensor:
    """``[N, width]``: per-sample gradients of ``layer``'s weights, projected (:func:`projection`)."""
    model.eval()
    proj, out = None, []
    for start in range(0, len(x), batch):
        g = per_sample_grads(model, layer, x[start:start + batch], y[start:start + batch])
        proj = projection(g.shape[1], width, seed) if proj is None else proj
        out.append(g @ proj)
    return torch.cat(out)


# ------------------------------------------------------------------ probe

def probe_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions: a seeded half of each label's rows, and the rest."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        train.append(rows[:len(rows) // 2])
        test.append(rows[len(rows) // 2:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def probe_accuracy(feats: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                   *, c: float = 1.0, k: int = 0) -> float:
    """Test accuracy of a standardised multinomial logistic regression (``C = c``) fitted on
    ``feats[train]``; with ``k > 0`` only on the ``k`` features of largest ANOVA F on train."""
    x_tr, x_te = feats[train], feats[test]
    if k > 0:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore")          # constant features: F = nan
            f_stat = np.nan_to_num(f_classif(x_tr, labels[train])[0], nan=0.0)
        keep = np.argsort(-f_stat, kind="stable")[:k]
        x_tr, x_te = x_tr[:, keep], x_te[:, keep]
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x_tr), labels[train])
    return float((clf.predict(scaler.transform(x_te)) == labels[test]).mean())


# ------------------------------------------------------------------ one (stream, seed)

class KeepModel(SupervisedPlugin):
    """Keeps ``strategy.model`` after every training experience (a method may replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.model: nn.Module | None = None

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.model = strategy.model


def probe_rows(stream: Stream, n: int, seed: int) -> tuple[Tensor, Tensor, np.ndarray]:
    """``(x, y, task)`` of ``min(n, smallest test experience)`` seeded test rows per experience."""
    n = min(n, *(len(idx) for idx in stream.test_idx))
    rows = [idx[sample_rows(len(idx), n, 7919 * seed + e)][:n]
            for e, idx in enumerate(stream.test_idx)]
    cat = torch.cat(rows)
    return stream.x_test[cat], stream.y_test[cat], np.repeat(np.arange(len(rows)), n)


def fit_rows(stream: Stream, exps: list[int], max_samples: int, seed: int) -> Tensor:
    """At most ``max_samples`` seeded training rows of each experience in ``exps``."""
    parts = []
    for e in exps:
        idx = stream.train_idx[e]
        parts.append(stream.x_train[idx[sample_rows(len(idx), max_samples, 104_729 * seed + e)]])
    return torch.cat(parts)


def measure(stream_name: str, seed: int, s: dict[str, Any], data_root: str | None) -> dict[str, Any]:
    """Train one model and probe every basis (module docstring); the JSON record of one run."""
    t0 = time.perf_counter()
    cfg = resolve_config(stream_name, "naive", s["model"], seed=seed, data_root=data_root,
                         overrides=["mono.when=off", *s["set"]])
    stream = build_stream(stream_name, seed=seed, data_root=data_root)
    keep = KeepModel()
    result = run(cfg, stream=stream, extra_plugins=[keep])
    if result.status != "ok" or keep.model is None:
        raise RuntimeError(f"{stream_name} seed {seed}: training failed: {result.error}")
    model, t_train = keep.model.eval(), time.perf_counter() - t0
    layer = default_layer(model)
    x, y, task = probe_rows(stream, s["rows"], seed)
    h = capture(model, layer, x)
    sae_kw = dict(kind=s["sae"], expansion=s["expansion"], k=s["k"], steps=s["sae_steps"])
    every = list(range(stream.n_experiences))
    sae_all = fit_layer_sae(model, layer, fit_rows(stream, every, s["max_samples"], seed),
                            seed=seed, **sae_kw)
    sae_0 = fit_layer_sae(model, layer, fit_rows(stream, [0], s["max_samples"], seed),
                          seed=seed, **sae_kw)
    width = sae_all.sae.n_latents
    rand = random_dictionary(sae_all.acts, width, s["k"], seed)
    with torch.no_grad():
        feats = {"sae_all": sae_all.sae.encode(h), "sae_exp0": sae_0.sae.encode(h),
                 "neurons": h, "random": rand.encode(h)}
        pred = torch.cat([model(xb).argmax(1) for xb in x.split(512)])
    feats["weights"] = weight_basis(model, layer, x, y, width, seed=1_000_003 + seed)
    feats["weights_pred"] = weight_basis(model, layer, x, pred, width, seed=1_000_003 + seed)
    train, test = probe_split(task, seed)
    probes = {p: {b: probe_accuracy(feats[b].double().numpy(), task, train, test, c=s["C"],
                                    k=s["sparse_k"] if p == "sparse" else 0) for b in BASES}
              for p in PROBES}
    return {"settings": s, "stream": stream_name, "seed": seed, "layer": layer,
            "n_experiences": stream.n_experiences, "rows_per_experience": len(x) // stream.n_experiences,
            "width": width, "param_dim": sum(p.numel() for p in layer_params(model, layer).values()),
            "final_accuracy": result.metric("final_accuracy"), "flags": result.flags,
            "fvu": {"sae_all": sae_quality(sae_all.sae, h)["fvu"],
                    "sae_exp0": sae_quality(sae_0.sae, h)["fvu"],
                    "random": sae_quality(rand, h)["fvu"]},
            "probe": probes, "seconds": {"train": t_train, "total": time.perf_counter() - t0}}


def cached(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record at ``path`` if it was made with ``settings``, else None."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("settings") == settings else None


# ------------------------------------------------------------------ table

def _cell(v: np.ndarray) -> str:
    return f"{100 * v.mean():.1f} ± {100 * ci95(v):.1f}" if len(v) > 1 else f"{100 * v.mean():.1f}"


def _acc(rs: list[dict], probe: str, basis: str) -> np.ndarray:
    return np.array([r["probe"][probe][basis] for r in rs])


def comparisons(recs: dict[str, list[dict]], layout: Layout = MLP) -> list[dict[str, Any]]:
    """One paired test per (stream, probe, basis in ``layout.against``), Holm-corrected over all
    of them."""
    tests = []
    for stream, rs in recs.items():
        for probe in PROBES:
            sae = {r["seed"]: r["probe"][probe][layout.ref] for r in rs}
            for b in layout.against:
                other = {r["seed"]: r["probe"][probe][b] for r in rs}
                tests.append({"stream": stream, "probe": probe, "basis": b,
                              "test": paired_test(sae, other)})
    for t, p in zip(tests, holm([t["test"].p_value for t in tests])):
        t["holm"] = p
    return tests


def _verdict(t: dict[str, Any], layout: Layout = MLP) -> str:
    if not t["holm"] < 0.05:
        return "no difference shown"
    return "SAE higher" if t["test"].diff > 0 else f"{layout.bases[t['basis']]} higher"


def findings(stream: str, rs: list[dict], tests: list[dict], layout: Layout = MLP) -> list[str]:
    """Plain statements of what holds on ``stream`` (dense probe)."""
    chance, ref = 1 / rs[0]["n_experiences"], layout.ref
    acc = {b: _acc(rs, "dense", b) for b in layout.bases}
    above = {b: len(v) > 1 and v.mean() - ci95(v) > chance for b, v in acc.items()}
    t = {x["basis"]: x for x in tests if x["stream"] == stream and x["probe"] == "dense"}
    pct = {b: f"{100 * v.mean():.1f}%" for b, v in acc.items()}
    out = [f"**{stream}** (chance {100 * chance:.1f}%)", "",
           f"  - Separable in the SAE basis ({pct[ref]}, interval above chance): "
           + ("holds." if above[ref] else "does not hold.")]
    for b in ("weights", "weights_pred"):
        out.append(f"  - Not separable in the weight basis, {layout.bases[b]}: " + (
            f"does not hold: it separates tasks too ({pct[b]})." if above[b]
            else "holds: not distinguishable from chance."))
    for b, what in layout.against.items():
        x, n_up = t[b], int(sum(r["probe"]["dense"][ref] > r["probe"]["dense"][b] for r in rs))
        d = (f"SAE − other {100 * x['test'].diff:+.1f} ± {100 * x['test'].half_width:.1f} pp, "
             f"SAE higher on {n_up} of {len(rs)} seeds, paired p = {x['test'].p_value:.3f}, "
             f"Holm p = {x['holm']:.3f}")
        if x["holm"] < 0.05 and x["test"].diff > 0:
            out.append(f"  - SAE codes are more separable than {what} ({d}).")
        elif x["holm"] < 0.05:
            out.append(f"  - {what[0].upper() + what[1:]} are MORE separable than SAE codes ({d}).")
        else:
            adds = ("; the SAE basis adds nothing measurable over "
                    + ("the neurons it encodes" if b == "neurons" else "an untrained dictionary")
                    if b in ("neurons", "random") else "")
            out.append(f"  - SAE codes against {what}: no difference shown at Holm p < 0.05 "
                       f"({d}){adds}.")
    return out


def overall(recs: dict[str, list[dict]], tests: list[dict], layout: Layout = MLP) -> str:
    """One sentence: on how many streams the claim, and its weaker form, holds (dense probe)."""
    dense = {(t["stream"], t["basis"]): t for t in tests if t["probe"] == "dense"}
    n = len(recs)

    def sig(stream: str, basis: str, sign: int) -> bool:
        t = dense[(stream, basis)]
        return t["holm"] < 0.05 and sign * t["test"].diff > 0

    def at_chance(rs: list[dict], basis: str) -> bool:
        v = _acc(rs, "dense", basis)
        return not v.mean() - ci95(v) > 1 / rs[0]["n_experiences"]

    strong = [st for st, rs in recs.items() if not at_chance(rs, layout.ref)
              and at_chance(rs, "weights") and at_chance(rs, "weights_pred")]
    weak = {b: [st for st in recs if sig(st, b, +1)] for b in layout.against}
    worse = {b: [st for st in recs if sig(st, b, -1)] for b in layout.against}
    say = lambda sts: f"{len(sts)} of {n}" + (f" ({', '.join(sts)})" if sts else "")  # noqa: E731
    return (f"The claim as stated (separable in the SAE basis, not in the weight basis) holds on "
            f"{say(strong)} {layout.unit}. SAE codes are significantly more separable than the weight "
            f"basis on {say(weak['weights'])} and less on {say(worse['weights'])}; than the "
            f"label-free weight basis (gradient at y^) more on {say(weak['weights_pred'])} and less "
            f"on {say(worse['weights_pred'])}; than neurons more on {say(weak['neurons'])} and less "
            f"on {say(worse['neurons'])}; than a random dictionary more on {say(weak['random'])} "
            f"and less on {say(worse['random'])} (Holm p < 0.05).")


def render(recs: dict[str, list[dict]], cmd: str) -> str:
    """The Markdown page: header, accuracy tables, paired tests, findings."""
    return "\n".join(page_lines(recs, cmd)) + "\n"


def page_lines(recs: dict[str, list[dict]], cmd: str) -> list[str]:
    tests, s = comparisons(recs), next(iter(recs.values()))[0]["settings"]
    seeds = sorted({r["seed"] for rs in recs.values() for r in rs})
    lines = [
        "# Is task identity linearly separable in the SAE basis but not in the weight basis?", "",
        f"Made by `{cmd}` (seed 001: Ning et al., arXiv 2606.26629; method in the script's "
        f"docstring). Model {s['model']} trained with naive (overrides: "
        f"{' '.join(s['set']) or 'none'}); label = experience id; probe = multinomial logistic "
        f"regression on standardised features (C = {s['C']}), trained on a seeded half of the rows "
        f"of each experience, accuracy on the other half; sparse probe = the same on the "
        f"{s['sparse_k']} features with the largest ANOVA F. SAE: TopK, m = {s['expansion']} d, "
        f"k = {s['k']}, {s['sae_steps']} steps, at most {s['max_samples']} training rows per "
        f"experience; weights = per-sample gradient of layer L's weights, Gaussian-projected to "
        f"m (the gradient is taken at the row's class, and in a class-incremental split stream "
        f"the class determines the task); weights at y^ = the same at the model's predicted class "
        f"(no label). Mean ± 95% t-interval over seeds "
        f"{','.join(map(str, seeds))}, accuracy in %.", ""]
    return lines + accuracy_tables(recs) + conclusions(recs, tests)


def conclusions(recs: dict[str, list[dict]], tests: list[dict], layout: Layout = MLP) -> list[str]:
    """The paired tests' table, then what holds on each stream, then the overall sentence."""
    return tests_table(tests, layout) + [
        "", "## What holds (dense probe)", "",
        *(line for st, rs in recs.items() for line in [*findings(st, rs, tests, layout), ""]),
        "**Overall.** " + overall(recs, tests, layout)]


def accuracy_tables(recs: dict[str, list[dict]]) -> list[str]:
    """The dense and sparse probes' accuracy tables (mean ± 95% t-interval, %), and SAE FVU."""
    s = next(iter(recs.values()))[0]["settings"]
    lines = ["## Probe accuracy, all features", "",
             "| stream | layer (d → m, D) | T (chance %) | rows / exp | model final acc % | "
             + " | ".join(BASES.values()) + " | seeds |", "|---" * (6 + len(BASES)) + "|"]
    for stream, rs in recs.items():
        r0, fin = rs[0], np.array([r["final_accuracy"] for r in rs])
        lines.append(f"| {stream} | {r0['layer']} ({r0['width'] // s['expansion']} → "
                     f"{r0['width']}, {r0['param_dim']}) | {r0['n_experiences']} "
                     f"({100 / r0['n_experiences']:.1f}) | {r0['rows_per_experience']} | "
                     f"{_cell(fin)} | " + " | ".join(_cell(_acc(rs, "dense", b)) for b in BASES)
                     + f" | {len(rs)} |")
    return lines + sparse_table(recs) + ["", "SAE FVU on the probe rows' activations (mean over seeds): "
                    + "; ".join(f"{st} all tasks {np.mean([r['fvu']['sae_all'] for r in rs]):.2f}, "
                                f"task 0 {np.mean([r['fvu']['sae_exp0'] for r in rs]):.2f}, random "
                                f"{np.mean([r['fvu']['random'] for r in rs]):.2f}"
                                for st, rs in recs.items()) + ".", ""]


def sparse_table(recs: dict[str, list[dict]], layout: Layout = MLP) -> list[str]:
    """The sparse probe's accuracy table (mean ± 95% t-interval, %)."""
    k, b = next(iter(recs.values()))[0]["settings"]["sparse_k"], layout.bases
    return ["", f"## Sparse probe, the {k} features of largest ANOVA F", "",
            "| stream | " + " | ".join(b.values()) + " |", "|---" * (1 + len(b)) + "|",
            *(f"| {stream} | " + " | ".join(_cell(_acc(rs, "sparse", x)) for x in b) + " |"
              for stream, rs in recs.items())]


def tests_table(tests: list[dict], layout: Layout = MLP) -> list[str]:
    """The paired tests, one row each."""
    lines = [f"## {layout.bases[layout.ref]} − other basis, percentage points (paired t-test "
             "over seeds, "
             f"Holm-corrected over all {len(tests)} tests of this page)", "",
             "| stream | probe | other basis | difference (95% CI) | seeds | paired p | Holm p "
             "| verdict |", "|---|---|---|---|---|---|---|---|"]
    for t in tests:
        x = t["test"]
        lines.append(f"| {t['stream']} | {t['probe']} | {layout.bases[t['basis']]} | "
                     f"{100 * x.diff:+.1f} ± {100 * x.half_width:.1f} | {x.n} | {x.p_value:.3f} | "
                     f"{t['holm']:.3f} | {_verdict(t, layout)} |")
    return lines


# ------------------------------------------------------------------ command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = SAERegConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="split-digits,split-mnist1d,split-fmnist")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--rows", type=int, default=200, help="probe rows per experience")
    ap.add_argument("--sae-steps", type=int, default=None,
                    help=f"SAE training steps (default {d.sae_steps}; text-v1: the pretrained "
                         "SAE's, 2000)")
    ap.add_argument("--max-samples", type=int, default=d.max_samples,
                    help="SAE training rows per experience")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the probe")
    ap.add_argument("--sparse-k", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training override for clbench run, e.g. epochs=1 (repeatable)")
    ap.add_argument("--results", default="results/separability", help="per-run JSON cache")
    ap.add_argument("--no-resume", action="store_true", help="redo runs found in --results")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    lm = ap.add_argument_group("text-v1 (language model; separability_lm.py)")
    lm.add_argument("--lm-states", default="pretrained",
                    help="model states to probe: pretrained and/or naive (comma-separated)")
    lm.add_argument("--sketch-nnz", type=int, default=4,
                    help="non-zeros per column of the gradient sketch (1: CountSketch)")
    lm.add_argument("--corpus-passages", type=int, default=None,
                    help=f"KJV passages of the pretrained SAE's corpus (default {d.corpus_passages})")
    lm.add_argument("--corpus-glosses", type=int, default=None,
                    help=f"WordNet glosses of the pretrained SAE's corpus (default {d.corpus_glosses})")
    return ap.parse_args(argv)


def check(a: argparse.Namespace) -> tuple[list[str], list[int]]:
    """The streams and seeds asked for; ClbenchError on anything the runs would fail on."""
    streams = [x.strip() for x in a.streams.split(",") if x.strip()]
    try:
        seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    except ValueError:
        raise ClbenchError(f"--seeds {a.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not streams or not seeds:
        raise ClbenchError("give at least one stream (--streams) and one seed (--seeds)")
    if a.rows < 2 or a.sparse_k < 1 or (a.sae_steps or 1) < 1 or a.max_samples < 1 or not a.C > 0:
        raise ClbenchError("--rows must be >= 2, --sparse-k, --sae-steps and --max-samples >= 1, "
                           "--C > 0")
    text = [st for st in streams if st in STREAMS and STREAMS.get(st).obj.family == "text"]
    if text and (len(text) != len(streams) or text != ["text-v1"]):
        raise ClbenchError(f"--streams {a.streams!r}: text-v1 makes its own page (a language "
                           f"model); give --streams text-v1 alone")
    if text:
        resolve_config("text-v1", "naive", a.model, overrides=list(a.set))
        return streams, seeds
    for st in streams:
        if STREAMS.get(st).obj.task_incremental:
            raise ClbenchError(f"stream {st!r} is task-incremental: the model is given task "
                               f"identity there; use its class-incremental stream")
        resolve_config(st, "naive", a.model, overrides=["mono.when=off", *a.set])
    return streams, seeds


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(1)
    try:
        streams, seeds = check(a)
    except ClbenchError as e:
        print(f"separability: error: {e}", file=sys.stderr)
        return 2
    cmd = " ".join(["python", "ci/separability.py", *(sys.argv[1:] if argv is None else argv)])
    if streams == ["text-v1"]:
        import separability_lm
        with threadpool_limits(1):
            return separability_lm.main_lm(a, seeds, cmd)
    d = SAERegConfig()
    settings = {"version": VERSION, "model": a.model, "set": list(a.set), "rows": a.rows,
                "sae": d.sae, "expansion": d.expansion, "k": d.k,
                "sae_steps": d.sae_steps if a.sae_steps is None else a.sae_steps,
                "max_samples": a.max_samples, "C": a.C, "sparse_k": a.sparse_k}
    recs: dict[str, list[dict]] = {}
    with threadpool_limits(1):
        for st in streams:
            for seed in seeds:
                path = Path(a.results) / st / a.model / f"seed{seed}.json"
                rec = None if a.no_resume else cached(path, {**settings})
                if rec is None:
                    try:
                        rec = measure(st, seed, settings, a.data_root)
                    except ClbenchError as e:
                        print(f"separability: error: {e}", file=sys.stderr)
                        return 2
                    write_text_atomic(path, json.dumps(rec, indent=1) + "\n")
                    how = f"{rec['seconds']['total']:.0f}s"
                else:
                    how = "cached"
                acc = " ".join(f"{b} {100 * v:.1f}" for b, v in rec["probe"]["dense"].items())
                print(f"separability: {st} seed {seed} ({how}): model acc "
                      f"{100 * rec['final_accuracy']:.1f}, probe % {acc}", file=sys.stderr,
                      flush=True)
                recs.setdefault(st, []).append(rec)
    text = render(recs, cmd)
    if a.out:
        write_text_atomic(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
