"""sae-reg against the baselines and its dictionary controls on one stream: the table of issue 15.

    clbench run --stream text-v1 --model smollm2-135m --seeds 0,1,2,3,4 \\
        --strategy naive,ewc,ewc-online,lwf,replay,sae-reg --results leaderboard/results
    clbench run --stream text-v1 --model smollm2-135m --seeds 0,1,2,3,4 --strategy sae-reg \\
        --set sae-reg.dictionary=random --results leaderboard/results
    python ci/sae_reg_lm.py leaderboard/results --out leaderboard/sae-reg-lm.md

Seed 001 (Ning, Xue, Lou and Guo, arXiv 2606.26629, 2026) claims that protecting the features of
a pretrained SAE that matter for old tasks forgets less than EWC at a fraction of its memory.
This script reads the result files of one (stream, model) and writes two tables:

1. **Per method**, mean ± 95% t-interval over its seeds: final average accuracy, BWT
   (``1/(T-1) sum_{i<T-1} R[T-1, i] - R[i, i]``, Lopez-Paz and Ranzato 2017), forgetting of the
   first task (``max_{l<T-1} R[l, 0] - R[T-1, 0]``, :func:`clbench.metrics.cl.task_forgetting`;
   the first task is the one every later task can hurt), the general-ability perplexity ratio (prose
   perplexity after the stream / before it), the state kept between experiences (bytes) and
   the training seconds.
2. **Paired differences** ``sae-reg - X`` for every compared label ``X`` and every tested
   metric, over the seeds both ran (runs of one seed share the split, the prose sample and the
   initialisation of the trained part): mean with its 95% interval, the paired t-test p-value
   and its Holm correction over every test on the page (:mod:`clbench.board.paired`). A verdict
   needs Holm p < 0.05. State bytes are not tested: they are fixed by the method's
   construction (the same for every seed), so the table gives their ratio instead.

A compared label is a strategy name (``ewc``) or ``NAME=LABEL`` for runs made with non-default
settings, e.g. ``random=sae-reg@1a2b3c4d`` (the results folder's ``sae-reg@<hash>``; the hash
names the settings, see ``clbench.names``).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.paired import PairedTest, holm, paired_test  # noqa: E402
from clbench.board.rank import ci95  # noqa: E402
from clbench.errors import ClbenchError  # noqa: E402
from clbench.metrics.cl import task_forgetting  # noqa: E402
from clbench.metrics.registry import metric  # noqa: E402
from clbench.results import load_results  # noqa: E402

#: the forgetting of the first task, read from the accuracy matrix (not a stored metric)
FIRST_TASK = "first_task_forgetting"
#: the state kept after the last experience less the frozen dictionary (kind ``sae``): for
#: sae-reg its mask and weights, for EWC its Fisher and anchor (read from the last record)
OWN_STATE = "state_without_sae"
#: (metric, column heading, scale for display, tested, decimals shown)
COLUMNS: list[tuple[str, str, float, bool, int]] = [
    ("final_accuracy", "final acc (%)", 100.0, True, 1),
    ("bwt", "BWT (pts)", 100.0, True, 1),
    (FIRST_TASK, "first-task forgetting (pts)", 100.0, True, 1),
    ("general_ppl_ratio", "prose ppl ratio", 1.0, True, 3),
    ("state_bytes", "state (MB)", 1e-6, False, 2),
    (OWN_STATE, "of it not the SAE (MB)", 1e-6, False, 3),
    ("train_seconds", "train (s)", 1.0, True, 0),
]
DEFAULT_AGAINST = "naive,ewc,ewc-online,lwf,replay"


def label_of(r: dict[str, Any]) -> str:
    return str(r.get("label", r["config"]["strategy"]))


def value(r: dict[str, Any], name: str) -> float | None:
    if name == FIRST_TASK:
        return task_forgetting(r["accuracy_matrix"], 0)
    if name == OWN_STATE:
        last = (r.get("per_experience") or [{}])[-1]
        kinds = last.get("state_bytes_by_kind")
        if "state_bytes" not in last or kinds is None:
            return None
        return float(last["state_bytes"] - kinds.get("sae", 0))
    v = r["metrics"].get(name, {}).get("value")
    return None if v is None else float(v)


def higher_is_better(name: str) -> bool:
    return False if name in (FIRST_TASK, OWN_STATE) else metric(name).higher_is_better


def per_seed(results: list[dict[str, Any]], label: str, name: str) -> dict[int, float]:
    """seed -> value of metric ``name`` for the ok runs of ``label``."""
    out = {}
    for r in results:
        if r["status"] == "ok" and label_of(r) == label and (v := value(r, name)) is not None:
            out[int(r["config"]["seed"])] = v
    return out


def parse_against(spec: str) -> list[tuple[str, str]]:
    """``naive,random=sae-reg@ab12`` -> [("naive", "naive"), ("random", "sae-reg@ab12")]."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, label = part.partition("=")
        out.append((name, label or name))
    return out


def fmt(v: np.ndarray, scale: float, digits: int) -> str:
    if len(v) == 0:
        return "—"
    h = ci95(v * scale)
    return f"{v.mean() * scale:.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")


def build(results: list[dict[str, Any]], method: str, against: list[tuple[str, str]]
          ) -> tuple[list[str], list[dict[str, Any]]]:
    """The per-method table's lines and the paired tests (Holm-corrected) of ``method`` - X."""
    names = [(method, method), *against]
    missing = [lab for _, lab in names if not per_seed(results, lab, "final_accuracy")]
    if missing:
        raise ClbenchError(f"no ok runs of {', '.join(missing)} in the results given; run them "
                           "(see the commands at the top of ci/sae_reg_lm.py) or drop them from "
                           "--against")
    lines = ["| method | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name, lab in names:
        seeds = sorted(per_seed(results, lab, "final_accuracy"))
        cells = [fmt(np.array(list(per_seed(results, lab, m).values())), s, d)
                 for m, _, s, _, d in COLUMNS]
        shown = name if name == lab else f"{name} (`{lab}`)"
        lines.append(f"| {shown} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    tests: list[dict[str, Any]] = []
    for name, lab in against:
        for m, head, scale, tested, _ in COLUMNS:
            if tested:
                t = paired_test(per_seed(results, method, m), per_seed(results, lab, m))
                tests.append({"against": name, "metric": m, "head": head, "scale": scale,
                              "test": t})
    for row, p in zip(tests, holm([row["test"].p_value for row in tests])):
        row["holm"] = p
    return lines, tests


def verdict(t: PairedTest, holm_p: float, name: str, method: str) -> str:
    if math.isnan(holm_p) or holm_p >= 0.05:
        return "no difference shown"
    return f"{method} {'higher' if t.diff > 0 else 'lower'}"


def render(results: list[dict[str, Any]], stream: str, model: str, method: str,
           against: list[tuple[str, str]], command: str) -> str:
    mine = [r for r in results if r["config"]["stream"] == stream
            and r["config"]["model"] == model]
    lines, tests = build(mine, method, against)
    out = [f"# {method} against the baselines and its dictionary controls ({stream}, {model})", "",
           f"Generated by `{command}`. Mean ± 95% t-interval over seeds.", "", *lines, ""]
    mb = {lab: np.mean(list(per_seed(mine, lab, "state_bytes").values()))
          for _, lab in [(method, method), *against]}
    ratios = ", ".join(f"{name} {mb[lab] / mb[method]:.3g}x" for name, lab in against
                       if mb[method] > 0)
    own = {lab: np.mean(list(per_seed(mine, lab, OWN_STATE).values()) or [math.nan])
           for _, lab in [(method, method), *against]}
    own_ratios = ", ".join(f"{name} {own[lab] / own[method]:.3g}x" for name, lab in against
                           if own[method] > 0)
    out += [f"State kept between experiences, as a multiple of {method}'s: {ratios} "
            "(fixed by each method's construction, so not tested). The frozen dictionary (the "
            "pretrained SAE, kind `sae`) is part of it; without it, as a multiple of "
            f"{method}'s: {own_ratios or 'n/a'}.", "",
            "Training seconds are each run's own, measured while other jobs shared the machine "
            "(loads differ between runs); the like-for-like cost is the side-by-side benchmark "
            "of `python ci/bench_lm.py cost` (leaderboard/bench-lm.md).", "",
            f"## Paired differences ({method} − X)", "",
            f"Per seed, {method} minus X on the seeds both ran; paired t-test, Holm-corrected over "
            f"all {len(tests)} tests below; a verdict needs Holm p < 0.05. For forgetting, the "
            "perplexity ratio and time, lower is better.", "",
            "| X | metric | difference (95% CI) | seeds | paired p | Holm p | verdict |",
            "|---|---|---|---|---|---|---|"]
    for row in tests:
        t, s = row["test"], row["scale"]
        hib = higher_is_better(row["metric"])
        v = verdict(t, row["holm"], row["against"], method)
        if v != "no difference shown":
            v += " (better)" if (t.diff > 0) == hib else " (worse)"
        half = "" if math.isnan(t.half_width) else f" ± {t.half_width * s:.3g}"
        out.append(f"| {row['against']} | {row['head']} | {t.diff * s:+.3g}{half} | {t.n} | "
                   f"{t.p_value:.3g} | {row['holm']:.3g} | {v} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="one or more results folders")
    ap.add_argument("--stream", default="text-v1")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="sae-reg", help="the method under test (a label)")
    ap.add_argument("--against", default=DEFAULT_AGAINST,
                    help="comma-separated labels or NAME=LABEL (default %(default)s)")
    ap.add_argument("--out", default=None, help="the Markdown file to write")
    a = ap.parse_args(argv)
    command = "python ci/sae_reg_lm.py " + " ".join(a.results) + (
        f" --method {a.method}" if a.method != "sae-reg" else "") + (
        f" --against {a.against}" if a.against != DEFAULT_AGAINST else "") + (
        f" --out {a.out}" if a.out else "")
    try:
        results = [r for root in a.results for r in load_results(root)]
        text = render(results, a.stream, a.model, a.method, parse_against(a.against), command)
        if a.out:
            write_text_atomic(a.out, text)
    except ClbenchError as e:
        print(f"sae_reg_lm.py: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
