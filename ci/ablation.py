"""The sae-reg ablation: which parts of the loss matter, on one stream, over seeds.

    python ci/ablation.py --stream split-fmnist --seeds 0,1,2 --results results/ablation \\
        --out leaderboard/ablation-sae-reg.md
    python ci/ablation.py --stream split-fmnist --task-incremental --out leaderboard/ablation-sae-reg-til.md

Each variant is sae-reg with its registered defaults plus the overrides in :data:`VARIANTS`
(naive and EWC as references). Runs go through ``clbench.run.sweep.run_cells``, so they are resumable
and every result is a normal clbench result file; the table shows mean ± 95% t-interval over seeds
of final accuracy and forgetting (max - last), the bytes the method keeps (mask and SAE apart), and
from sae-reg's per-experience record (``per_experience[i]["method"]``, means over seeds): the mask's
share of the dictionary after the last experience (``sae_reg_mask_fraction``), the dictionary's
worst FVU on a later experience's activations (``sae_reg_fvu``, experiences 1..T-1; above 0.5 it
does not represent that data) and the hooked layer's mean activation after the last experience
over that after the first (``sae_reg_mean_activation``; a ratchet shows as a ratio well above 1).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: variant name -> (strategy, overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "naive": ("naive", []),
    "ewc": ("ewc", []),
    "sae-reg (defaults)": ("sae-reg", []),
    "protect only": ("sae-reg", ["sae-reg.guide_lam=0"]),
    "guide only": ("sae-reg", ["sae-reg.lam=0"]),
    "one-sided protect": ("sae-reg", ["sae-reg.rho=one-sided"]),
    "relative protect": ("sae-reg", ["sae-reg.rho=relative"]),
    "importance on every sample": ("sae-reg", ["sae-reg.gate=all"]),
    # the defaults before the fixes and the equal-budget search (one-sided, every sample, lam 10)
    "old defaults": ("sae-reg", ["sae-reg.rho=one-sided", "sae-reg.gate=all", "sae-reg.lam=10",
                                 "sae-reg.guide_lam=0.1", "sae-reg.q=0.9"]),
    "random dictionary": ("sae-reg", ["sae-reg.dictionary=random"]),
    "neuron basis": ("sae-reg", ["sae-reg.dictionary=neurons"]),
    "q = 0.5": ("sae-reg", ["sae-reg.q=0.5"]),
    "q = 0.99": ("sae-reg", ["sae-reg.q=0.99"]),
}


def method_columns(results: list[dict]) -> tuple[float | None, float | None, float | None]:
    """Means over ``results`` of sae-reg's records: mask fraction after the last experience, the
    worst FVU on experiences 1..T-1, last over first mean activation; None where a result (a
    baseline, an older file) has no record."""
    mask, fvu, ratio = [], [], []
    for r in results:
        recs = [e.get("method", {}) for e in r["per_experience"]]
        if not recs or "sae_reg_mask_fraction" not in recs[-1]:
            return None, None, None
        mask.append(recs[-1]["sae_reg_mask_fraction"])
        later = [x["sae_reg_fvu"] for x in recs[1:] if "sae_reg_fvu" in x]
        if later:
            fvu.append(max(later))
        first = recs[0]["sae_reg_mean_activation"]
        ratio.append(recs[-1]["sae_reg_mean_activation"] / first if first > 0 else float("inf"))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return mean(mask), mean(fvu), mean(ratio)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (:func:`clbench.board.rank.ci95`)."""
    from clbench.board.rank import ci95  # lazy: --help answers without importing torch

    a = np.asarray(values, dtype=float)
    return float(a.mean()), ci95(a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream", default="split-fmnist")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--task-incremental", action="store_true")
    ap.add_argument("--results", default="results/ablation")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    a = ap.parse_args(argv)

    import torch  # lazy: --help answers without importing torch
    torch.set_num_threads(1)
    from clbench.atomic import write_text_atomic  # lazy: --help answers without importing torch
    from clbench.errors import ClbenchError  # lazy: --help answers without importing torch
    from clbench.results import load_result  # lazy: --help answers without importing torch
    from clbench.suites import Cell  # lazy: --help answers without importing torch
    from clbench.run.sweep import run_cells  # lazy: --help answers without importing torch

    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    try:
        for name, (strategy, overrides) in VARIANTS.items():
            cells = [Cell(a.stream, a.model, strategy, s) for s in seeds]
            paths = run_cells(cells, a.results, [*overrides, "mono.when=off"], a.data_root,
                              task_incremental=a.task_incremental, show_progress=True)
            res = [load_result(p) for p in paths]
            ok = [r for r in res if r["status"] == "ok"]
            acc = mean_ci([r["metrics"]["final_accuracy"]["value"] for r in ok])
            fgt = mean_ci([r["metrics"]["forgetting_max"]["value"] for r in ok])
            kinds = ok[-1]["per_experience"][-1]["state_bytes_by_kind"] if ok else {}
            sae = kinds.get("sae", 0)
            rest = sum(kinds.values()) - sae
            extra = method_columns(ok) if ok else (None, None, None)
            rows.append((name, " ".join(overrides) or "-", acc, fgt, rest, sae, *extra, len(ok),
                         len(res)))
    except ClbenchError as e:
        print(f"ablation: error: {e}", file=sys.stderr)
        return 2
    from clbench.streams import STREAMS  # lazy: --help answers without importing torch

    spec = STREAMS.get(a.stream).obj
    scen = ("task-incremental" if a.task_incremental or spec.task_incremental else
            {"split": "class-incremental"}.get(spec.kind, "domain-incremental"))
    cmd = " ".join(["python", "ci/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# sae-reg ablation: {a.stream} ({scen}), {a.model}, seeds {a.seeds}", "",
             f"Made by `{cmd}`. Mean ± 95% t-interval over seeds. State = bytes kept between "
             "experiences besides the SAE (the mask for sae-reg); SAE = the frozen dictionary. "
             "Mask % = the mask's share of the dictionary's latents after the last experience; "
             "max FVU = the dictionary's worst FVU on a later experience's activations (> 0.5: "
             "it does not represent that data); act last/first = the hooked layer's mean "
             "activation after the last experience over that after the first (a ratchet shows "
             "as a ratio well above 1). Means over seeds.", "",
             "| variant | overrides | final acc % | forgetting (max) % | state KB | SAE KB | "
             "mask % | max FVU | act last/first | runs ok |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, ov, acc, fgt, rest, sae, mask, fvu, ratio, n_ok, n in rows:
        lines.append(f"| {name} | `{ov}` | {100 * acc[0]:.1f} ± {100 * acc[1]:.1f} | "
                     f"{100 * fgt[0]:.1f} ± {100 * fgt[1]:.1f} | {rest / 1024:.1f} | "
                     f"{sae / 1024:.0f} | {_fmt(None if mask is None else 100 * mask, '.1f')} | "
                     f"{_fmt(fvu, '.2f')} | {_fmt(ratio, '.2f')} | {n_ok}/{n} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        out = Path(a.out)
        write_text_atomic(out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
