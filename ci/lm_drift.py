"""Where the trained part drifts: how far old tasks' activations move, layer by layer.

    python ci/lm_drift.py leaderboard/results/text-v1/smollm2-135m/naive/seed3.json \\
        runs/text-v1/smollm2-135m/sae-reg/seed3.json --out leaderboard/lm-drift.md

sae-reg protects the pretrained SAE's features at one layer (``block28`` on SmolLM2 with the
top 2 blocks trained); the blocks above it (``block29``, the final norm) and the head are not
protected. This asks of runs kept with ``--keep-checkpoints`` (text runs: the trained part) how
far each layer's representation of a task's rows moves between the checkpoint just after that
task (``theta_e``) and the last one (``theta_T``), so that a method's effect at its hook can be
told apart from its effect where the answer is read.

For task ``e`` (every task but the last), ``X_e`` its test rows (prompt, gold answer; at most
``--rows``), ``H_l(theta)`` the ``[N, d]`` layer-``l`` outputs pooled as the model pools them
(mean over real tokens) and ``Hbar`` their row mean::

    drift_l(e) = || H_l(theta_T) - H_l(theta_e) ||_F / || H_l(theta_e) - Hbar_l(theta_e) ||_F

(movement measured against the spread of the rows, since a residual stream's mean dominates its
norm). At sae-reg's hook the same is read in the SAE basis sae-reg's penalty reads,
``F = mean_t ReLU(W_enc (h_t - b_pre) + b_enc)`` (the pretrained SAE, reused by fingerprint),
``drift_sae(e) = ||F(theta_T) - F(theta_e)||_F / ||F(theta_e)||_F``. The page lists ``e = 0`` (the
first task, the longest exposed) and the mean over tasks ``0 .. T-1``. It describes single runs:
no test is made, and none is claimed.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.analyze.loading import LoadedRun, load_run  # noqa: E402
from clbench.atomic import write_text_atomic  # noqa: E402
from clbench.errors import ClbenchError  # noqa: E402
from clbench.sae.capture import capture  # noqa: E402
from clbench.strategies.sae_reg import (  # noqa: E402
    SAEFeatures, SAERegConfig, _lm_sae_settings, _pretrained)


def relative_drift(after: Tensor, before: Tensor, *, centre: bool) -> float:
    """``||after - before||_F / ||before - centre||_F`` (``centre``: the row mean of ``before``,
    else 0); 0 when ``before`` has no spread and nothing moved."""
    base = before - before.mean(dim=0, keepdim=True) if centre else before
    denom = float(base.norm())
    num = float((after - before).norm())
    return num / denom if denom > 0 else (0.0 if num == 0 else float("inf"))


def task_rows(run: LoadedRun, e: int, n: int) -> Tensor:
    """The first ``n`` test rows of task ``e`` (the stream's seeded order)."""
    s = run.stream
    return s.x_test[s.test_idx[e][:n]]


def sae_features(run: LoadedRun, layer: str, overrides: dict[str, Any]) -> SAEFeatures:
    """sae-reg's pretrained SAE at ``layer`` with its text settings (``overrides``: some of
    ``expansion``, ``k``, ``sae_steps``, ``corpus_passages``, ``corpus_glosses``), found as
    sae-reg finds it (:func:`strategies.sae_reg._pretrained`), read as its ``pool=codes`` does."""
    c = SAERegConfig(**{**_lm_sae_settings(), **overrides})
    extras = {"train": run.config.train, "data_root": run.config.data_root}
    sae, _ = _pretrained(run.models[-1].lm, layer, c, extras)
    return SAEFeatures(layer, sae, pool="codes")


def measure(path: str, layers: list[str], sae_layer: str, n_rows: int,
            sae: dict[str, Any] | None = None) -> dict[str, Any]:
    run = load_run(path)
    if run.text is None:
        raise ClbenchError(f"{path}: not a text run; ci/lm_drift.py reads text-v1 runs")
    missing = [name for name in layers if name not in run.models[0].hook_layers]
    if missing:
        raise ClbenchError(f"{path}: layer(s) {', '.join(missing)} not in the trained part "
                           f"({', '.join(run.models[0].hook_layers)}); pick from those")
    if run.after != list(range(len(run.after))):
        raise ClbenchError(f"{path}: checkpoints after experiences {run.after}; need one "
                           "after every experience (--keep-checkpoints)")
    feats = sae_features(run, sae_layer, sae or {})
    final = run.models[-1]
    rows: dict[str, list[float]] = {name: [] for name in [*layers, "sae"]}
    for e in range(len(run.models) - 1):
        x = task_rows(run, e, n_rows)
        for name in layers:
            rows[name].append(relative_drift(capture(final, name, x), capture(run.models[e], name, x),
                                             centre=True))
        codes = [capture(m, sae_layer, x, transform=feats._token_codes)
                 for m in (final, run.models[e])]
        rows["sae"].append(relative_drift(*codes, centre=False))
    cfg = run.config
    return {"path": path, "strategy": cfg.strategy, "seed": cfg.seed,
            "final_acc": run.data["metrics"]["final_accuracy"]["value"], "drift": rows}


def render(recs: list[dict[str, Any]], layers: list[str], sae_layer: str, cmd: str) -> str:
    head = [f"`{name}`" for name in layers] + [f"SAE f at `{sae_layer}`"]
    out = ["# Where the trained part drifts (text-v1, smollm2-135m)", "",
           f"Generated by `{cmd}`. Relative drift of each earlier task's test rows from the "
           "checkpoint just after the task to the last one (`ci/lm_drift.py`'s docstring has the "
           "formula); single runs, no test.", ""]
    for title, pick in (("First task (en-fr)", lambda v: v[0]),
                        ("Mean over tasks 0-4", lambda v: sum(v) / len(v))):
        out += [f"## {title}", "", "| run | seed | final acc (%) | " + " | ".join(head) + " |",
                "|---|---|---|" + "---|" * len(head)]
        for r in recs:
            vals = [pick(r["drift"][k]) for k in [*layers, "sae"]]
            out.append(f"| {r['strategy']} (`{r['path']}`) | {r['seed']} | "
                       f"{100 * r['final_acc']:.1f} | " + " | ".join(f"{v:.3f}" for v in vals)
                       + " |")
        out.append("")
    return "\n".join(out)


SAE_KEYS = ("expansion", "k", "sae_steps", "corpus_passages", "corpus_glosses")


def parse_sae(items: list[str]) -> dict[str, int]:
    """``["k=8", ...]`` -> ``{"k": 8}``; a :class:`ClbenchError` line for anything else."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SAE_KEYS or not value.isdigit():
            raise ClbenchError(f"--sae {item!r}: give KEY=INT with KEY one of {', '.join(SAE_KEYS)}")
        out[key] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="text-v1 result JSONs kept with --keep-checkpoints")
    p.add_argument("--layers", default="block28,block29,norm", help="trained-part hook layers")
    p.add_argument("--sae-layer", default="block28", help="the layer of sae-reg's SAE")
    p.add_argument("--rows", type=int, default=100, help="test rows per task (default 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--sae", action="append", default=[], metavar="KEY=INT",
                   help="the SAE's settings if not sae-reg's text defaults (expansion, k, "
                        "sae_steps, corpus_passages, corpus_glosses); repeatable")
    p.add_argument("--out", required=True, help="Markdown page to write")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    layers = [x for x in a.layers.split(",") if x]
    cmd = "python ci/lm_drift.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    try:
        if a.rows < 2:
            raise ClbenchError(f"--rows {a.rows}: need at least 2 rows per task")
        sae = parse_sae(a.sae)
        recs = [measure(r, layers, a.sae_layer, a.rows, sae) for r in a.runs]
    except ClbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(recs, layers, a.sae_layer, cmd)
    write_text_atomic(a.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
