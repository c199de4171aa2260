"""SAE-ception vs Naive: the reproduction table of issue 5, from result files.

    clbench run --stream split-digits,split-fmnist --strategy naive,sae-ception --model mlp \\
                --seeds 0,1,2 --results leaderboard/results
    clbench run --stream split-fmnist --strategy naive,sae-ception --model vit --seeds 0,1,2 \\
                --set model.embed_dim=96 --set model.depth=4 --set model.patch_size=7 --results leaderboard/repro
    python ci/repro_sae_ception.py leaderboard/results leaderboard/repro \\
                --cells split-digits:mlp,split-fmnist:mlp,split-fmnist:vit@3ef2617c --out leaderboard/sae-ception-repro.md

The paper's claim under test (SAE-ception, NeurIPS 2025 MechInterp workshop): more monosemantic
SAE features at a small accuracy cost. For each stream it prints, per metric, the mean ± 95%
t-interval over seeds for both methods, the difference, and Welch's t-test p-value; "holds"
marks a difference in the claimed direction with p < 0.05. The monosemanticity metrics are
clbench's standard block (a fresh TopK SAE on the hooked layer ``fc1``, held-out test data).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.rank import ci95  # noqa: E402
from clbench.metrics.registry import metric  # noqa: E402
from clbench.models import MODELS, create_model  # noqa: E402
from clbench.results import load_results  # noqa: E402

METRICS = ["final_accuracy", "forgetting_max", "mono_silhouette_latent", "mono_silhouette_label",
           "mono_davies_bouldin", "mono_csi", "mono_uncertainty_coef", "mono_sparse_probe_k1"]


def values(results: list[dict], stream: str, model: str, label: str, metric: str) -> np.ndarray:
    return np.array([r["metrics"][metric]["value"] for r in results
                     if r["status"] == "ok" and r["config"]["stream"] == stream
                     and r["config"]["model"] == model
                     and r.get("label", r["config"]["strategy"]) == label
                     and r["metrics"].get(metric, {}).get("value") is not None], dtype=float)


def default_layer_of(model: str) -> str:
    """The registered model's ``default_layer`` (a small instance is built to read it)."""
    if model not in MODELS:
        return "default layer"
    shape = (3, 32, 32) if MODELS.get(model).meta.get("input") == "image" else (40,)
    return create_model(model, shape, 10).default_layer


def table(results: list[dict], stream: str, model: str, tag: str = "",
          pair: tuple[str, str] = ("naive", "sae-ception")) -> str:
    """``pair[1]`` against ``pair[0]`` (default: sae-ception vs naive) on one (stream, model);
    ``tag`` (``@<hash>``) picks runs made with the same non-default settings, as ``clbench run``
    labels them."""
    base, method = pair
    mine = [r for r in results if r["config"]["stream"] == stream and r["config"]["model"] == model
            and r.get("label", r["config"]["strategy"]) in (base + tag, method + tag)]
    layer = (mine[0]["config"].get("mono", {}).get("layer") if mine else "") \
        or default_layer_of(model)
    mp = mine[0]["config"].get("model_params", {}) if mine else {}
    arch = ", ".join(f"{k}={v}" for k, v in mp.items())
    lines = [f"### {stream} ({model}, hook {layer})", "", f"Model: {model}({arch}).", "",
             f"| metric | better | {base} | {method} | difference | Welch p | "
             f"{'claim holds' if pair == ('naive', 'sae-ception') else 'verdict'} |",
             "|---|---|---|---|---|---|---|"]
    for m in METRICS:
        a, b = (values(results, stream, model, base + tag, m),
                values(results, stream, model, method + tag, m))
        if len(a) == 0 or len(b) == 0:
            continue
        hib = metric(m).higher_is_better
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue) if len(a) > 1 and len(b) > 1 else float("nan")
        diff = b.mean() - a.mean()
        better = diff > 0 if hib else diff < 0
        if m == "final_accuracy":
            verdict = "cost: %.1f points" % (-100 * diff) if diff < 0 else "no cost"
        elif m == "forgetting_max":
            verdict = "-"
        else:
            verdict = "yes" if better and p < 0.05 else ("direction only" if better else "no")
        lines.append(f"| {m} | {'higher' if hib else 'lower'} | {a.mean():.4f} ± {ci95(a):.4f} | "
                     f"{b.mean():.4f} ± {ci95(b):.4f} | {diff:+.4f} | {p:.3f} | {verdict} |")
    n = (len(values(results, stream, model, base + tag, "final_accuracy")),
         len(values(results, stream, model, method + tag, "final_accuracy")))
    lines.append(f"\nseeds: {base} {n[0]}, {method} {n[1]}\n")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="one or more results folders")
    ap.add_argument("--cells", default="split-digits:mlp,split-fmnist:mlp",
                    help="comma-separated stream:model[@tag] cells, one table each (the tag picks "
                         "runs with the same non-default settings)")
    ap.add_argument("--pair", default="naive,sae-ception",
                    help="BASELINE,METHOD: the two strategies compared (default naive,sae-ception)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    pair = tuple(a.pair.split(","))
    if len(pair) != 2:
        sys.exit(f"repro_sae_ception.py: error: --pair {a.pair!r}: give two strategies, e.g. ewc,sae-reg")
    results = [r for root in a.results for r in load_results(root)]
    cells = [(c.split(":")[0], *c.split(":")[1].partition("@")[::2]) for c in a.cells.split(",")]
    default = pair == ("naive", "sae-ception")
    title = "SAE-ception vs Naive (issue 5 reproduction)" if default else f"{pair[1]} vs {pair[0]}"
    opt = "" if default else f" --pair {a.pair}"
    text = (f"# {title}\n\nGenerated by `python ci/repro_sae_ception.py "
            f"{' '.join(a.results)} --cells {a.cells}{opt}`; mean ± 95% t-interval over seeds.\n\n"
            + "\n".join(table(results, s, m, "@" + t if t else "", pair) for s, m, t in cells))
    if a.out:
        write_text_atomic(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
