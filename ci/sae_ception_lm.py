"""SAE-ception on the pretrained LM (issue 15, item 5): every arm against naive, from result files.

    R=leaderboard/sae-ception-lm
    clbench run --stream text-v1 --strategy naive --seeds 0,1,2,3,4 --results leaderboard/results
    clbench run --stream text-v1 --strategy sae-ception --seeds 0,1,2,3,4 --results $R --threads 1
    for s in "lam=0" "lam=0.3" "sharpen=random --set sae-ception.lam=0.3" \\
             "top_frac=0 --set sae-ception.top_n=25 --set sae-ception.lam=0.3"; do
        clbench run --stream text-v1 --strategy sae-ception --set sae-ception.$s \\
            --seeds 0,1,2,3,4 --results $R --threads 1
    done
    python ci/sae_ception_lm.py leaderboard/results $R --out leaderboard/sae-ception-lm.md

The naive baseline is the lm-v1 suite's own cells (``leaderboard/results``): a second copy of
the same cell under ``$R`` would be the same result twice, which clbench refuses
(:mod:`clbench.results`, "one run counts once").

Arms: each ``sae-ception`` settings tag found in the results (the text family's defaults are
SAE-ception 2.0's: final trained block, prompt's last token, TopK 8x k 50, top 1% of latents per
class, lambda 0.01, one cycle after each task's ordinary epochs; :mod:`clbench.strategies.sae_ception`),
named by what differs: ``lam``, ``top 1%`` or ``top 25`` (v1's N), ``random`` (the control:
random per-class latents, the same SAE and pull). ``lam=0`` is the schedule control (the same
extra cycle epoch, no aux term; named ``lam=0 (schedule)`` whatever its latent setting, which
does not act without the term).

Metrics: final accuracy, forgetting, the prose perplexity ratio, the final accuracy of the two
classification tasks (supersense, fortune-topic: the only tasks with an aux term), and, after
the stream, the final block's monosemanticity on those tasks' rows (``result["mono_lm"]["after"]``,
:mod:`clbench.run.text_mono`: a fresh evaluation SAE's silhouette, Davies-Bouldin, U and CSI,
and the MLP neurons' CSI and U); the pretrained model's values (``before``, the same for every
arm of a seed) are shown beside them.

Statistics: per arm and metric, the arm minus naive per seed (a seed fixes the split, the order
and the initial state), Student's paired t-test over the seeds both ran; then the same against
each arm's controls (:func:`controls`): every pulling arm minus the schedule control (is it the
pull or the extra epoch?) and every sharpened arm minus the random-target arm of its lambda (is
it the class's latents or any pull?). Holm-corrected over every test on the page
(:mod:`clbench.board.paired`); a verdict needs Holm p < 0.05. Below, descriptive: the aux term
as trained (the cosine loss to the targets, and lambda times it as a share of the task loss,
per cycle in each run's record).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.paired import holm, paired_test  # noqa: E402
from clbench.board.rank import ci95  # noqa: E402
from clbench.results import load_results  # noqa: E402

#: metric -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "final_accuracy": ("final accuracy", True),
    "forgetting_max": ("forgetting (max)", False),
    "general_ppl_ratio": ("prose ppl ratio", False),
    "acc:supersense": ("supersense final acc", True),
    "acc:fortune-topic": ("fortune-topic final acc", True),
    "mono_silhouette_label": ("SAE silhouette (labels)", True),
    "mono_davies_bouldin": ("SAE Davies-Bouldin", False),
    "mono_uncertainty_coef": ("SAE U", True),
    "mono_csi": ("SAE CSI", True),
    "neuron_csi": ("neuron CSI", True),
    "neuron_u_hy": ("neuron U / H(y) (2.0)", True),
    "neuron_u_hb": ("neuron U / H(b) (v1)", True),
}
METHOD = "sae-ception"


def value(r: dict[str, Any], name: str, when: str = "after") -> float | None:
    """``name`` of result ``r``: a metric, ``acc:<task>`` (the final row of R), or a monosemanticity
    value of ``r["mono_lm"][when]``; None when absent."""
    if name.startswith("acc:"):
        tasks = r["stream"]["tasks"]
        task = name[4:]
        return float(r["accuracy_matrix"][-1][tasks.index(task)]) if task in tasks else None
    if name in METRICS and (name.startswith("mono_") or name.startswith("neuron_")):
        v = r.get("mono_lm", {}).get(when, {}).get(name)
        return None if v is None else float(v)
    v = r["metrics"].get(name, {}).get("value")
    return None if v is None else float(v)


#: the name of the schedule control: lambda 0 runs the same cycle epochs with no aux term, so
#: which latents a class keeps does not matter
SCHEDULE = "lam=0 (schedule)"


def arm_name(r: dict[str, Any]) -> str:
    """A readable name for the run's sae-ception settings."""
    p = r["config"]["strategy_params"][METHOD]
    kept = f"top {p['top_frac'] * 100:g}%" if p["top_frac"] > 0 else f"top {p['top_n']}"
    kind = "random" if p["sharpen"] == "random" else kept
    name = SCHEDULE if p["lam"] == 0 else f"{kind} lam={p['lam']:g}"
    return name + ("" if p["cycles"] == 1 else f" cycles={p['cycles']}")


def controls(arms: list[str]) -> list[tuple[str, str]]:
    """``(arm, control)`` pairs among ``arms``: every pulling arm against the schedule control
    (is it the pull or the extra epoch?), and every sharpened arm against the random-target arm
    of the same lambda (is it the sharpened latents or any pull?)."""
    out = []
    for arm in arms:
        if arm.startswith(SCHEDULE):
            continue
        if SCHEDULE in arms:
            out.append((arm, SCHEDULE))
        lam = arm.split(" lam=")[1]
        if not arm.startswith("random") and f"random lam={lam}" in arms:
            out.append((arm, f"random lam={lam}"))
    return out


def aux_values(r: dict[str, Any], key: str) -> dict[str, float]:
    """Task -> the run's mean over cycles of ``per_experience[i]["method"][key]`` (the tasks
    with an aux term; {} for a run from before the record)."""
    out = {}
    for task, pe in zip(r["stream"]["tasks"], r.get("per_experience", [])):
        v = (pe.get("method") or {}).get(key)
        if isinstance(v, list) and v and all(x is not None for x in v):
            out[task] = float(np.mean(v))
    return out


def arms_of(results: list[dict[str, Any]], baseline: str) -> tuple[dict[int, dict[str, Any]],
                                                                  dict[str, dict[int, dict]]]:
    """The baseline's runs by seed and each sae-ception arm's runs by seed (ok runs only)."""
    ok = [r for r in results if r["status"] == "ok" and r["config"]["stream"] == "text-v1"]
    base = {int(r["config"]["seed"]): r for r in ok if r["config"]["strategy"] == baseline}
    arms: dict[str, dict[int, dict]] = {}
    for r in ok:
        if r["config"]["strategy"] == METHOD:
            arms.setdefault(arm_name(r), {})[int(r["config"]["seed"])] = r
    return base, dict(sorted(arms.items(), key=lambda kv: (kv[0].startswith("random"), kv[0])))


def _fmt(v: list[float]) -> str:
    a = np.array(v, dtype=float)
    return f"{a.mean():.4f} ± {ci95(a):.4f}" if len(a) else "-"


def _paired(runs: dict[int, dict], ref: dict[int, dict], m: str) -> Any:
    a = {s: v for s, r in ref.items() if (v := value(r, m)) is not None}
    b = {s: v for s, r in runs.items() if (v := value(r, m)) is not None}
    return paired_test(b, a) if set(a) & set(b) else None


def _cell(t: Any, p: float, up: bool) -> str:
    mark = (" **better**" if (t.diff > 0) == up else " **worse**") if p < 0.05 else ""
    return f"Δ {t.diff:+.4f}, n {t.n}, Holm p {p:.3g}{mark}"


def render(results: list[dict[str, Any]], baseline: str, cmd: str) -> str:
    base, arms = arms_of(results, baseline)
    pairs = controls(list(arms))
    # every test of the page: each arm against the baseline, then each arm against its controls
    tests: list[tuple[str, str, str, Any]] = []
    for arm, runs in arms.items():
        for m in METRICS:
            if (t := _paired(runs, base, m)) is not None:
                tests.append((arm, baseline, m, t))
    for arm, ctl in pairs:
        for m in METRICS:
            if (t := _paired(arms[arm], arms[ctl], m)) is not None:
                tests.append((arm, ctl, m, t))
    adj = holm([t.p_value for *_, t in tests])
    every = {(arm, ref, m): (t, p) for (arm, ref, m, t), p in zip(tests, adj)}
    by = {(arm, m): tp for (arm, ref, m), tp in every.items() if ref == baseline}
    seeds = sorted(base)
    lines = [f"# SAE-ception on the pretrained LM (text-v1, {baseline} as the baseline)", "",
             f"Made by `{cmd}`. Seeds of {baseline}: {seeds}. Cells: mean ± 95% t-interval over "
             f"seeds, then (Δ = arm − {baseline}, paired over seeds; Holm p over all "
             f"{len(tests)} tests of this page). Monosemanticity after the stream on the "
             "classification tasks' rows (final block, prompt's last token); `before`: the "
             "pretrained model.", "",
             f"| metric | better | before | {baseline} | " + " | ".join(arms) + " |",
             "|---|---|---|---|" + "---|" * len(arms)]
    for m, (label, up) in METRICS.items():
        before = [v for r in base.values() if (v := value(r, m, "before")) is not None]
        cells = []
        for arm, runs in arms.items():
            vals = [v for r in runs.values() if (v := value(r, m)) is not None]
            if (arm, m) not in by:
                cells.append(_fmt(vals))
                continue
            t, p = by[(arm, m)]
            cells.append(f"{_fmt(vals)} ({_cell(t, p, up)})")
        base_vals = [v for r in base.values() if (v := value(r, m)) is not None]
        lines.append(f"| {label} | {'higher' if up else 'lower'} | "
                     f"{_fmt(before) if m.startswith(('mono_', 'neuron_')) else '-'} | "
                     f"{_fmt(base_vals)} | " + " | ".join(cells) + " |")
    if pairs:
        lines += ["", "**Against the controls** (Δ = arm − control, paired over the seeds both "
                  f"ran; `{SCHEDULE}`: the same cycle epochs without the aux term; `random`: "
                  "random latents per class at the same lambda; Holm over the whole page):", "",
                  "| metric | better | " + " | ".join(f"{a} − {c}" for a, c in pairs) + " |",
                  "|---|---|" + "---|" * len(pairs)]
        for m, (label, up) in METRICS.items():
            cells = [_cell(*every[(a, c, m)], up) if (a, c, m) in every else "-" for a, c in pairs]
            lines.append(f"| {label} | {'higher' if up else 'lower'} | " + " | ".join(cells) + " |")
    aux_tasks = sorted({t for runs in arms.values() for r in runs.values()
                        for t in aux_values(r, "sae_ception_aux_term")})
    if aux_tasks:
        lines += ["", "**The aux term as trained** (descriptive; per run the mean over the cycle's "
                  "steps, then mean ± 95% t-interval over the seeds that recorded it, n): "
                  "`1 − cos` is the cosine loss to the target, `share` is λ · aux / task loss.", "",
                  "| arm | " + " | ".join(f"{t}: 1 − cos | {t}: share" for t in aux_tasks) + " |",
                  "|---|" + "---|---|" * len(aux_tasks)]
        for arm, runs in arms.items():
            cells = []
            for t in aux_tasks:
                for key in ("sae_ception_aux_term", "sae_ception_lam_aux_share"):
                    v = [x[t] for r in runs.values() if t in (x := aux_values(r, key))]
                    cells.append(f"{_fmt(v)} (n {len(v)})" if v else "-")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")

    def named(arm: str, ref: str, m: str) -> str:
        return f"{arm}: {METRICS[m][0]}" + ("" if ref == baseline else f" (vs {ref})")

    wins = [named(*k) for k, (t, p) in every.items() if p < 0.05 and (t.diff > 0) == METRICS[k[2]][1]]
    losses = [named(*k) for k, (t, p) in every.items()
              if p < 0.05 and (t.diff > 0) != METRICS[k[2]][1]]
    lines += ["", f"**Better** (Holm p < 0.05; against {baseline} unless a control is named): "
              + ("; ".join(wins) or "nothing") + ".", "",
              "**Worse**: " + ("; ".join(losses) or "nothing") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="results folders")
    ap.add_argument("--baseline", default="naive")
    ap.add_argument("--out", default=None, help="Markdown page (default: print it)")
    a = ap.parse_args(argv)
    results = [r for root in a.results for r in load_results(root)]
    base, arms = arms_of(results, a.baseline)
    if not base or not arms:
        print(f"sae_ception_lm: error: no ok text-v1 runs of {a.baseline} and {METHOD} in "
              f"{', '.join(a.results)}", file=sys.stderr)
        return 2
    cmd = " ".join(["python", "ci/sae_ception_lm.py", *(argv if argv is not None else sys.argv[1:])])
    text = render(results, a.baseline, cmd)
    if a.out:
        write_text_atomic(a.out, text)
        print(f"wrote {a.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
