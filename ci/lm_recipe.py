"""How the text family's training recipe is chosen: naive fine-tuning on a validation split.

    python ci/lm_recipe.py --lr 1e-3,3e-4,1e-4 --seed 0 --out leaderboard/lm-recipe.md

For each learning rate, one naive run of ``text-v1`` on SmolLM2-135M-Instruct (the text defaults
of ``clbench/run/config.py`` otherwise: Adam, batch 16, the epochs given) with
``validation=0.25``: a quarter of each task's training examples is held out and scored in place
of the test set (:func:`clbench.data.text_tasks.holdout_text`), so the real test examples are
never read. The runs share one process, hence one frozen-prefix store.

The criterion is *plasticity*, the first thing a fine-tuning recipe must deliver: with ``R`` the
validation accuracy matrix (``R[i][j]``: task ``j`` after training on task ``i``) and ``P`` the
pretrained row, the gain on task ``j`` is ``R[j][j] - P[j]`` and the chosen rate is the one of
largest mean gain over the tasks. Forgetting is what the methods are compared on, so it is not
the criterion (the rate that forgets least is the one that learns least); it is printed beside
(final-row mean and the prose perplexity ratio) for information.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.run.config import resolve_config  # noqa: E402
from clbench.run.runner import run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", default="1e-3,3e-4,1e-4", help="comma-separated learning rates")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--validation", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="markdown file for the table")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    rows, names = [], []
    for lr in (float(v) for v in a.lr.split(",")):
        cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=a.seed,
                             overrides=[f"lr={lr}", f"epochs={a.epochs}",
                                        f"validation={a.validation}"])
        r = run(cfg)
        if r.status != "ok":
            raise SystemExit(f"lr {lr}: run failed: {r.error}")
        names = list(r.stream["tasks"])
        p = np.array(r.random_init_accuracy)
        R = np.array(r.accuracy_matrix)
        gain = np.diag(R) - p
        ppl = r.metrics["general_ppl_ratio"]["value"]
        rows.append((lr, p, np.diag(R), gain, R[-1].mean(), ppl, r.metrics["train_seconds"]["value"]))
        print(f"lr {lr:g}: mean gain {gain.mean():+.3f}, final mean {R[-1].mean():.3f}, "
              f"prose ppl ratio {ppl:.2f}", flush=True)
    best = max(rows, key=lambda row: row[3].mean())
    lines = [f"# The text family's learning rate (naive, validation={a.validation}, seed {a.seed}, "
             f"{a.epochs} epochs)", "",
             "Validation accuracy (held-out training examples, never the test set) of each task "
             "after training on it, minus its pretrained accuracy; the rate of largest mean gain "
             "is chosen. Final mean and prose perplexity ratio are for information.", "",
             "| lr | " + " | ".join(names) + " | mean gain | final mean | prose ppl ratio | train s |",
             "|---:|" + "---:|" * (len(names) + 4)]
    for lr, p, diag, gain, final, ppl, secs in rows:
        cells = " | ".join(f"{d:.2f} ({g:+.2f})" for d, g in zip(diag, gain))
        lines.append(f"| {lr:g} | {cells} | {gain.mean():+.3f} | {final:.3f} | {ppl:.2f} | "
                     f"{secs:.0f} |")
    lines += ["", "pretrained (validation): " + ", ".join(f"{n} {v:.2f}" for n, v in
                                                        zip(names, rows[0][1])),
              "", f"chosen: lr {best[0]:g}", "",
              f"command: `python ci/lm_recipe.py --lr {a.lr} --epochs {a.epochs} "
              f"--validation {a.validation} --seed {a.seed}`", ""]
    text = "\n".join(lines)
    print(text)
    if a.out:
        write_text_atomic(a.out, text)


if __name__ == "__main__":
    main()
