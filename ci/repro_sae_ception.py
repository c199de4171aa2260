"""SAE-ception vs Naive: the reproduction table of issue 5, from result files.

    clbench run --stream split-digits,split-fmnist --strategy naive,sae-ception --model mlp \\
                --seeds 0,1,2 --results leaderboard/results
    clbench run --stream split-fmnist --strategy naive,sae-ception --model vit --seeds 0,1,2 \\
                --set model.embed_dim=96 --set model.depth=4 --set model.patch_size=7 --results leaderboard/repro
    python ci/repro_sae_ception.py leaderboard/results leaderboard/repro \\
                --cells split-digits:mlp,split-fmnist:mlp,split-fmnist:vit@3ef2617c --out leaderboard/sae-ception-repro.md

The paper's claim under test (SAE-ception, NeurIPS 2025 MechInterp workshop): more monosemantic
SAE features at a small accuracy cost. For each stream it prints, per metric, the mean ± 95%
t-interval over seeds for both methods, the paired difference over seeds with its 95% interval,
the paired t-test p-value and its Holm correction over every test on the page; a verdict needs
Holm p < 0.05 (:mod:`clbench.board.paired`). The monosemanticity metrics are
clbench's standard block (a fresh TopK SAE on the hooked layer ``fc1``, held-out test data).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.paired import holm, paired_test  # noqa: E402
from clbench.board.rank import ci95  # noqa: E402
from clbench.metrics.registry import metric  # noqa: E402
from clbench.models import MODELS, create_model  # noqa: E402
from clbench.results import load_results  # noqa: E402

METRICS = ["final_accuracy", "forgetting_max", "mono_silhouette_latent", "mono_silhouette_label",
           "mono_davies_bouldin", "mono_csi", "mono_uncertainty_coef", "mono_sparse_probe_k1"]


def values(results: list[dict], stream: str, model: str, label: str, metric: str
           ) -> dict[int, float]:
    """seed -> value of ``metric`` for the runs of one (stream, model, label)."""
    return {int(r["config"]["seed"]): float(r["metrics"][metric]["value"]) for r in results
            if r["status"] == "ok" and r["config"]["stream"] == stream
            and r["config"]["model"] == model
            and r.get("label", r["config"]["strategy"]) == label
            and r["metrics"].get(metric, {}).get("value") is not None}


def default_layer_of(model: str) -> str:
    """The registered model's ``default_layer`` (a small instance is built to read it)."""
    if model not in MODELS:
        return "default layer"
    shape = (3, 32, 32) if MODELS.get(model).meta.get("input") == "image" else (40,)
    return create_model(model, shape, 10).default_layer


def table(results: list[dict], stream: str, model: str, tag: str = "",
          pair: tuple[str, str] = ("naive", "sae-ception")) -> tuple[list[str], list[dict]]:
    """``pair[1]`` against ``pair[0]`` (default: sae-ception vs naive) on one (stream, model):
    the table's heading lines and one row per metric (its paired test, not yet corrected);
    ``tag`` (``@<hash>``) picks runs made with the same non-default settings."""
    base, method = pair
    mine = [r for r in results if r["config"]["stream"] == stream and r["config"]["model"] == model
            and r.get("label", r["config"]["strategy"]) in (base + tag, method + tag)]
    layer = (mine[0]["config"].get("mono", {}).get("layer") if mine else "") \
        or default_layer_of(model)
    mp = mine[0]["config"].get("model_params", {}) if mine else {}
    arch = ", ".join(f"{k}={v}" for k, v in mp.items())
    head = [f"### {stream} ({model}, hook {layer})", "", f"Model: {model}({arch}).", "",
            f"| metric | better | {base} | {method} | difference (paired, 95% CI) | seeds | "
            f"paired p | Holm p | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for m in METRICS:
        a, b = (values(results, stream, model, base + tag, m),
                values(results, stream, model, method + tag, m))
        if a and b:
            rows.append({"metric": m, "a": a, "b": b, "test": paired_test(b, a)})
    return head, rows


def render_rows(head: list[str], rows: list[dict], base: str, method: str) -> str:
    lines = list(head)
    for row in rows:
        m, t, hib = row["metric"], row["test"], metric(row["metric"]).higher_is_better
        a, b = np.array(list(row["a"].values())), np.array(list(row["b"].values()))
        better = t.diff > 0 if hib else t.diff < 0
        sig = row["holm"] < 0.05
        verdict = (f"{method} better" if better else f"{method} worse") if sig else "no difference shown"
        lines.append(f"| {m} | {'higher' if hib else 'lower'} | {a.mean():.4f} ± {ci95(a):.4f} | "
                     f"{b.mean():.4f} ± {ci95(b):.4f} | {t.diff:+.4f} ± {t.half_width:.4f} | "
                     f"{t.n} | {t.p_value:.3f} | {row['holm']:.3f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="one or more results folders")
    ap.add_argument("--cells", default="split-digits:mlp,split-fmnist:mlp",
                    help="comma-separated stream:model[@tag] cells, one table each (the tag picks "
                         "runs with the same non-default settings)")
    ap.add_argument("--pair", default="naive,sae-ception",
                    help="BASELINE,METHOD: the two strategies compared (default naive,sae-ception)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--title", default=None, help="the page's title (default: METHOD vs BASELINE)")
    ap.add_argument("--note", default="", help="a sentence after the title, e.g. what a tag means")
    a = ap.parse_args()
    pair = tuple(a.pair.split(","))
    if len(pair) != 2:
        sys.exit(f"repro_sae_ception.py: error: --pair {a.pair!r}: give two strategies, e.g. ewc,sae-reg")
    results = [r for root in a.results for r in load_results(root)]
    cells = [(c.split(":")[0], *c.split(":")[1].partition("@")[::2]) for c in a.cells.split(",")]
    default = pair == ("naive", "sae-ception")
    title = a.title or ("SAE-ception vs Naive (issue 5 reproduction)" if default
                        else f"{pair[1]} vs {pair[0]}")
    opt = ("" if default else f" --pair {a.pair}") + (f" --title {a.title!r}" if a.title else "")
    opt += f" --note {a.note!r}" if a.note else ""
    tables = [table(results, s, m, "@" + t if t else "", pair) for s, m, t in cells]
    family = [row for _, rows in tables for row in rows]
    for row, p in zip(family, holm([row["test"].p_value for row in family])):
        row["holm"] = p
    text = (f"# {title}\n\n" + (f"{a.note}\n\n" if a.note else "") + "Generated by `python ci/repro_sae_ception.py "
            f"{' '.join(a.results)} --cells {a.cells}{opt}`; mean ± 95% t-interval over seeds. "
            f"Differences are {pair[1]} − {pair[0]} per seed (runs of one seed share class order, "
            f"permutations and initialisation): paired t-test over the seeds both ran, Holm-"
            f"corrected over all {len(family)} (metric, stream) tests of this page "
            f"(clbench.board.paired); a verdict needs Holm p < 0.05.\n\n"
            + "\n".join(render_rows(h, rows, *pair) for h, rows in tables))
    if a.out:
        write_text_atomic(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
