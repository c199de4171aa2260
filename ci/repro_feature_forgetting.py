"""Feature-level forgetting beside accuracy forgetting, over seeds, with the null model's row.

    python ci/repro_feature_forgetting.py leaderboard/repro --out leaderboard/feature-forgetting.md

Made from these runs (split-fmnist, 1 epoch per experience, this machine's CPU, one thread;
``clbench analyze`` also runs at one thread by default, and its numbers depend on the count:
the same checkpoints analyzed at two threads moved naive seed 0's "capacity halved" from 0.25
to 0.35). The MLP (issue 13: 3 seeds, held-out FVU, null model, flags):

    clbench run --stream split-fmnist --strategy naive,replay,sae-reg --seeds 0,1,2 --model mlp \\
        --keep-checkpoints --results leaderboard/repro --no-resume --threads 1 \\
        --set model.hidden=100,100 --set mono.when=off
    for s in naive replay sae-reg; do for k in 0 1 2; do
        R=leaderboard/repro/split-fmnist/mlp/$s@b5021f37/seed$k.json
        clbench analyze $R --probe-size 2000 --steps 1000 --expansion 4 --k 16
        clbench analyze $R --probe-size 2000 --steps 1000 --expansion 4 --k 16 --null
    done; done

The MLP sae-reg runs were made with sae-reg's defaults of that time (``lam=10``,
``guide_lam=0.1``, ``q=0.9``; the table names them as differing from today's); the command
above runs today's defaults. Their checkpoints are remade exactly (same accuracy matrix) by
running the cell with ``--set sae-reg.lam=10 --set sae-reg.guide_lam=0.1 --set sae-reg.q=0.9``
into another folder and copying its ``seed<k>.ckpt/`` beside the committed ``seed<k>.json``.

The small ViT (issue 13: 3 seeds, null model):

    VIT="--set model.embed_dim=96 --set model.depth=4 --set model.num_heads=3 --set model.patch_size=7"
    clbench run --stream split-fmnist --model vit --strategy naive,replay,sae-reg --seeds 0,1,2 \\
        --keep-checkpoints $VIT --results leaderboard/repro --no-resume --threads 1
    for s in naive replay sae-reg; do for k in 0 1 2; do
        R=leaderboard/repro/split-fmnist/vit/$s@3ef2617c/seed$k.json
        clbench analyze $R --layers block1,block3,cls
        clbench analyze $R --layers block1,block3,cls --null
    done; done

Seed 0 of each row was re-run and re-analyzed on 2026-12-03 to remake its committed report
(``seed0.analysis/report.html``; the other reports are not committed, see ``.gitignore``).
The re-runs gave the committed accuracy matrices exactly, except ViT sae-reg (a run of
2026-12-02 on an AVX2 CPU; on this AVX512 one its last-row accuracy on experience 4 differs by
1.35 points), whose seed-0 numbers are now those of the re-run.

The language model (issue 15: text-v1, SmolLM2-135M with its top 2 blocks trained; one seed
per method, seed 3, whose naive, replay and sae-reg cells were kept with checkpoints; the null
model of naive stands for all three, whose first experience trains alike; ``--k-aux 128``
because the default AuxK width makes a step of this crosscoder ten times dearer, see
:class:`clbench.analyze.fit.CrosscoderSettings`)::

    D=leaderboard/results/text-v1/smollm2-135m
    A="--layers block28,block29,norm --probe-size 600 --steps 500 --k-aux 128 --threads 1"
    clbench run --stream text-v1 --strategy naive,replay,sae-reg --seeds 3 --keep-checkpoints \
        --results leaderboard/results --no-resume --threads 1
    for s in naive replay sae-reg; do clbench analyze $D/$s/seed3.json $A; done
    clbench analyze $D/naive/seed3.json $A --null
    python ci/repro_feature_forgetting.py leaderboard/results \
        --title "Feature-level forgetting on the language model (issue 15)" \
        --out leaderboard/feature-forgetting-lm.md

Reads every result under the folder that carries a ``feature_forgetting`` block (written by
``clbench analyze``) and prints one row per (stream, model, strategy): the mean over seeds and
the half-width of the 95% t-interval (:func:`clbench.board.rank.ci95`; a bare value for one
seed) of final accuracy, forgetting (max - last) and the crosscoder's summary metrics
(``clbench/analyze/measures.py`` defines them); then, where the runs were also analyzed with
``--null``, the same metrics of the null model (checkpoint 0 repeated: what the measures read
when nothing changed), and the runs' flags (:mod:`clbench.metrics.flags`).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.board.rank import check_analyses, ci95  # noqa: E402
from clbench.errors import ClbenchError  # noqa: E402
from clbench.results import load_results  # noqa: E402
from clbench.run.config import resolve_config  # noqa: E402

COLUMNS = ["ff_frac_first_exp_capacity_halved", "ff_frac_capacity_halved",
           "ff_mean_capacity_retention", "ff_mean_persistence", "ff_mean_readout_drop",
           "ff_frac_moved_to_middle", "ff_crosscoder_fvu", "ff_crosscoder_fvu_heldout"]
#: accuracy metrics of the run (not of the null model), shown in %
ACCURACY = ["final_accuracy", "forgetting_max"]
#: marks a row whose analysis predates the held-out rows (and so the null model and flags)
OLD = "†"


def mean_ci(values: Iterable[float | None], scale: float = 1.0, digits: int = 3) -> str:
    """``"m ± h"`` over the non-missing values (``"m"`` for one, ``"-"`` for none)."""
    v = np.array([x for x in values if x is not None], dtype=float) * scale
    if len(v) == 0:
        return "-"
    h = ci95(v)
    return f"{v.mean():.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")


def flags_cell(runs: list[dict[str, Any]]) -> str:
    """The runs' flags by seed (``s4: collapsed:exp4``), ``none``, or ``not recorded``."""
    if all("flags" not in r for r in runs):
        return "not recorded"
    found = [f"s{r['config']['seed']}: {', '.join(r['flags'])}" for r in runs if r.get("flags")]
    return "; ".join(found) if found else "none"


def stale_params(run: dict[str, Any]) -> list[str]:
    """The run's method parameters whose value differs from today's default
    (``sae-reg.rho=one-sided (now two-sided)``): a method whose defaults changed since."""
    c = run["config"]
    try:
        now = resolve_config(c["stream"], c["strategy"], c["model"], c["seed"]).strategy_params
    except ClbenchError:
        return []
    return [f"{m}.{k}={v} (now {now[m][k]})" for m, params in c["strategy_params"].items()
            for k, v in params.items() if k in now.get(m, {}) and now[m][k] != v]


def group(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(stream, model, label) -> its analyzed runs, ordered by seed."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: r["config"]["seed"]):
        if r.get("status") == "ok" and r.get("feature_forgetting"):
            c = r["config"]
            out.setdefault((c["stream"], c["model"], r.get("label", c["strategy"])), []).append(r)
    return dict(sorted(out.items()))


def rows(key: tuple[str, str, str], runs: list[dict[str, Any]]) -> list[list[str]]:
    """The real row and, where every run has one, the null model's row."""
    stream, model, label = key
    old = any("ff_crosscoder_fvu_heldout" not in r["feature_forgetting"]["summary"]
              for r in runs)
    seeds = ",".join(str(r["config"]["seed"]) for r in runs)
    real = [stream, model, label + (f" {OLD}" if old else ""), "run", seeds,
            *[mean_ci((r["metrics"][m]["value"] for r in runs), 100.0, 1) for m in ACCURACY],
            *[mean_ci(r["feature_forgetting"]["summary"].get(c) for r in runs)
              for c in COLUMNS], flags_cell(runs)]
    out = [real]
    if all(r.get("feature_forgetting_null") for r in runs):
        out.append(["", "", "", "null", seeds, "-", "-",
                    *[mean_ci(r["feature_forgetting_null"]["summary"].get(c) for r in runs)
                      for c in COLUMNS], ""])
    return out


def shared_nulls(groups: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[str]:
    """Notes naming strategies of one (stream, model) whose null analyses are identical: their
    models after experience 0 are the same (same seeds; nothing to replay or protect yet)."""
    by_model: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for (stream, model, label), runs in groups.items():
        if all(r.get("feature_forgetting_null") for r in runs):
            nulls = [(r["config"]["seed"], r["feature_forgetting_null"]["summary"]) for r in runs]
            by_model.setdefault((stream, model), {})[label] = nulls
    notes = []
    for (stream, model), nulls in by_model.items():
        for value in {repr(v) for v in nulls.values()}:
            same = [label for label, v in nulls.items() if repr(v) == value]
            if len(same) > 1:
                notes.append(f"On {stream} / {model} the null rows of {', '.join(same)} are "
                             "identical: the null model is the model after experience 0, which "
                             "these strategies train alike (same seeds; there is nothing to "
                             "replay or protect before experience 1).")
    return notes


#: the page's heading unless --title gives another
TITLE = "Feature-level forgetting (issues 6 and 13)"


def table(results: list[dict[str, Any]], source: str, title: str = TITLE,
          out: str | None = None) -> str:
    """The Markdown page (results whose analyses of one stream and model differ in a setting
    are refused: :func:`clbench.board.rank.check_analyses`)."""
    check_analyses([r for r in results if r.get("feature_forgetting")])
    header = ["stream", "model", "strategy", "model analyzed", "seeds", "final acc %",
              "forgetting (max) %", *[c[3:] for c in COLUMNS], "flags"]
    groups = group(results)
    body = [r for key, runs in groups.items() for r in rows(key, runs)]
    stale = {key: sorted({p for r in runs for p in stale_params(r)})
             for key, runs in groups.items()}
    lines = [
        f"# {title}", "",
        f"Generated by `python ci/repro_feature_forgetting.py {source}"
        + (f" --title {title!r}" if title != TITLE else "")
        + (f" --out {out}" if out else "") + "` (the run and analyze "
        "commands are in its docstring; crosscoder settings in each result's "
        "`feature_forgetting.settings`). Each cell is the mean over the seeds listed ± the "
        "half-width of its 95% t-interval (a bare value: one seed).", "",
        "- **run**: the analysis of the run's checkpoints. **null**: the same runs analyzed "
        "with `clbench analyze --null`, every checkpoint replaced by the first (the model after "
        "experience 0), so nothing changed between checkpoints: its numbers are what the "
        "crosscoder's fit alone reads. A run's number means something only where it is "
        "clearly beyond its null row.",
        "- `crosscoder_fvu` is measured on the probe rows the crosscoder was fitted on, "
        "`crosscoder_fvu_heldout` on a seeded 20% of the probe it never saw.",
        "- **flags** (clbench.metrics.flags): `collapsed:exp<e>` (at chance on experience `e` "
        "right after training on it, with one answer for nearly every input) or "
        "`dead:<layer>@exp<e>`. A flagged run's feature numbers describe a broken network, "
        "not forgetting.",
        f"- {OLD}: analysis made before issue 13 (one seed, crosscoder fitted on the whole "
        "probe, no held-out rows, no null model, a result file without flags); the run's "
        "settings are as they were then (see the docstring).", "",
        "| " + " | ".join(header) + " |", "|---" * len(header) + "|",
        *["| " + " | ".join(r) + " |" for r in body],
    ]
    notes = [*shared_nulls(groups),
             *[f"Runs whose method settings differ from today's defaults: {model} {label}: "
               f"{', '.join(v)}." for (_, model, label), v in stale.items() if v]]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", default=None)
    ap.add_argument("--title", default=TITLE, help="the page's heading")
    a = ap.parse_args()
    text = table(load_results(a.results), a.results, a.title, a.out)
    if a.out:
        write_text_atomic(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
