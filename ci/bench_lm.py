"""Benchmarks of the pretrained-LM path, measured side by side in one process.

    python ci/bench_lm.py loop [--n-train 96] [--repeats 3]   # clbench's loop vs a plain loop
    python ci/bench_lm.py run [--strategy naive]               # one text-v1 run at the defaults
    python ci/bench_lm.py state                                # state bytes: ewc, ewc-online, sae-reg
    python ci/bench_lm.py cost [--experiences 2] [--repeats 2] # sae-reg / naive training time
    python ci/bench_lm.py guide [--rows 16] [--repeats 6]     # the ablate guide's cost per step
    python ci/bench_lm.py cells --results leaderboard/results --seed 0   # the lm-v1 cells' costs
    python ci/bench_lm.py matrix --strategy naive --seed 0     # one cell's accuracy rows and prose ppl

``loop``: the first task of text-v1 (``--n-train`` rows, ``--epochs`` 2, batch 16, Adam 1e-4, the top 2
blocks of SmolLM2-135M-Instruct) trained two ways on the same packed rows: clbench
(:func:`clbench.run.text.run_text`: Avalanche's Naive, clbench's in-memory loader, the prefix
cache) and a plain PyTorch loop written below (the same model class, criterion, optimiser,
batch size and prefix cache; batches in a seeded random order). Each starts from a freshly
loaded model with an empty prefix cache, so both compute the frozen prefix once per row. Rounds
alternate the order; the median per-step time and the ratio clbench / plain are reported
(target: <= 1.1, issue 14).

``run``: one full run (6 tasks, the CPU defaults: 200 train / 100 test rows per task, 2 epochs)
of one strategy: seconds per task (training), scoring seconds, training tokens/s, peak RSS.
``state``: ``ewc``, ``ewc-online`` and ``sae-reg`` after 2 tasks (no scoring): the method state
in bytes next to the trained part's parameter bytes and the whole model's.

``cost``: sae-reg's training seconds against naive's, alternating rounds in one process
(:func:`bench_cost`; target <= 1.5x).

``cells``: what the committed lm-v1 result files of one seed record about their cost (run in
one process, so the frozen prefix is computed by the first cell only): per strategy, training
and scoring seconds, the pretrained row's scoring seconds, the prefix's seconds, training
tokens/s, peak RSS and method state; nothing is re-run.

Results print as Markdown; ``--out FILE`` also writes them there.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.results import write_result  # noqa: E402
from clbench.run.config import resolve_config  # noqa: E402
from clbench.run.runner import run  # noqa: E402
from clbench.run.text import build_text_run, full_model_bytes, run_text  # noqa: E402
from clbench.run.cost import module_bytes  # noqa: E402


def plain_loop(cfg: Any, n_rows: int) -> tuple[float, int]:
    """Seconds and steps of one epoch of a hand-written loop on the first task's rows."""
    torch.manual_seed(cfg.seed)
    model, ts = build_text_run(cfg)
    s = ts.stream
    rows = s.train_idx[0][:n_rows]
    x, y = s.x_train[rows], s.y_train[rows]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train["lr"])
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    model.train()
    steps = 0
    t0 = time.perf_counter()
    for epoch in range(cfg.train["epochs"]):
        for b in order.split(cfg.train["batch_size"]):
            loss = loss_fn(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return time.perf_counter() - t0, steps


def clbench_loop(cfg: Any) -> tuple[float, int]:
    r = run_text(cfg, experiences=1, score=False)
    if r.status != "ok":
        raise SystemExit(f"clbench run failed: {r.error}")
    n = cfg.train["stream.n_train"]
    steps = -(-n // cfg.train["batch_size"]) * cfg.train["epochs"]
    return r.per_experience[0]["train_seconds"], steps


def bench_loop(a: argparse.Namespace) -> str:
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0,
                         overrides=[f"stream.n_train={a.n_train}", f"epochs={a.epochs}"])
    times: dict[str, list[float]] = {"clbench": [], "plain": []}
    for r in range(a.repeats):
        order = ["clbench", "plain"] if r % 2 == 0 else ["plain", "clbench"]
        for name in order:
            sec, steps = clbench_loop(cfg) if name == "clbench" else plain_loop(cfg, a.n_train)
            times[name].append(sec / steps)
            print(f"round {r} {name}: {sec:.1f} s, {steps} steps", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return "\n".join([
        f"## clbench's LM training loop vs a plain loop (text-v1 task 0, {a.n_train} rows, "
        f"{a.epochs} epochs, batch 16, {a.repeats} rounds, median)", "",
        "| loop | s / step | ratio to plain |", "|---|---:|---:|",
        *(f"| {k} | {med[k]:.3f} | {med[k] / med['plain']:.3f} |" for k in ("clbench", "plain")),
        "", f"command: `python ci/bench_lm.py loop --n-train {a.n_train} --epochs {a.epochs} "
        f"--repeats {a.repeats}` (torch threads: {torch.get_num_threads()})", ""])


def bench_run(a: argparse.Namespace) -> str:
    cfg = resolve_config("text-v1", a.strategy, "smollm2-135m", seed=a.seed)
    t0 = time.perf_counter()
    r = run(cfg)
    wall = time.perf_counter() - t0
    if r.status != "ok":
        raise SystemExit(f"run failed: {r.error}")
    if a.results:   # the run is also an lm-v1 cell: keep its result
        r.extra["label"] = a.strategy
        print(f"result: {write_result(r, a.results, '')}")
    m = {k: v["value"] for k, v in r.metrics.items()}
    per_task = [p["train_seconds"] for p in r.per_experience]
    return "\n".join([
        f"## One text-v1 run of {a.strategy} (seed {a.seed}) at the CPU defaults", "",
        "| quantity | value |", "|---|---:|",
        f"| wall-clock, whole run (load, tokenize, train, score) | {wall / 60:.1f} min |",
        f"| training seconds per task | {', '.join(f'{t:.0f}' for t in per_task)} |",
        f"| scoring seconds (pretrained row) | {r.extra['pretrained_eval_seconds']:.0f} |",
        f"| scoring seconds (after each task, total) | {m['eval_seconds']:.0f} |",
        f"| training tokens / s | {m['tokens_per_second']:.0f} |",
        f"| peak RSS | {m['peak_rss_bytes'] / 2**30:.2f} GiB |",
        f"| final accuracy / pretrained mean accuracy | {m['final_accuracy']:.3f} / "
        f"{sum(r.random_init_accuracy) / len(r.random_init_accuracy):.3f} |",
        f"| prose perplexity before -> after | {m['general_ppl_before']:.2f} -> "
        f"{m['general_ppl_after']:.2f} |", "",
        f"command: `python ci/bench_lm.py run --strategy {a.strategy} --seed {a.seed}` "
        f"(torch threads: {torch.get_num_threads()})", ""])


def bench_state(a: argparse.Namespace) -> str:
    lines = ["## Method state on the trained part (text-v1, 2 tasks of 32 rows, 1 epoch, top 2 "
             "blocks)", "",
             "| strategy | state MB | by kind | trained part MB | whole model MB |",
             "|---|---:|---|---:|---:|"]
    for strategy in ("ewc", "ewc-online", "sae-reg"):
        cfg = resolve_config("text-v1", strategy, "smollm2-135m", seed=0,
                             overrides=["stream.n_train=32", "epochs=1"])
        r = run_text(cfg, experiences=2, score=False)
        if r.status != "ok":
            raise SystemExit(f"{strategy} failed: {r.error}")
        last = r.per_experience[-1]
        kinds = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in last["state_bytes_by_kind"].items())
        model, _ = build_text_run(cfg)
        lines.append(f"| {strategy} | {last['state_bytes'] / 1e6:.1f} | {kinds} | "
                     f"{module_bytes(model) / 1e6:.1f} | {full_model_bytes(model) / 1e6:.1f} |")
    return "\n".join([*lines, "", "command: `python ci/bench_lm.py state`", ""])


#: the ablate guide's resumed pass the way it ran before clbench.models.lm_rows: the last block
#: at every token, then read at the answer positions (the third arm of ``cost``)
WHOLE_LAST_BLOCK = "sae-reg, whole last block"


@contextlib.contextmanager
def whole_last_block() -> Iterator[None]:
    """Within: ``CausalLMModel._features_at`` runs the whole last block and reads its answer rows."""
    from clbench.models.lm import CausalLMModel

    fast = CausalLMModel._features_at
    CausalLMModel._features_at = (  # type: ignore[method-assign]
        lambda self, resume, ids, mask, rows, cols: self._features_from(resume, ids, mask)[rows, cols])
    try:
        yield
    finally:
        CausalLMModel._features_at = fast  # type: ignore[method-assign]


def bench_cost(a: argparse.Namespace) -> str:
    """sae-reg's training time against naive's on the same tasks, side by side in one process.

    Each round trains ``--experiences`` tasks of text-v1 (no scoring) with naive, with sae-reg,
    and with sae-reg whose ablate guide runs the whole last block again (:data:`WHOLE_LAST_BLOCK`,
    the code before :mod:`clbench.models.lm_rows`), rotating which goes first; the prefix is
    warmed before any is timed, so all time the trained part only. sae-reg's seconds include
    what it adds: building each task's feature mask at its end and the penalty's SAE encode in
    every step (the pretrained SAE is fitted once and reused by fingerprint; its fit is not a
    per-run cost). Reported: the median over rounds of each arm's training seconds and of the
    per-round ratios to naive (target: <= 1.5, issue 15)."""
    arms = ("naive", "sae-reg", WHOLE_LAST_BLOCK)
    rows: dict[str, list[float]] = {k: [] for k in arms}
    ratios: dict[str, list[float]] = {k: [] for k in arms[1:]}
    for k in range(a.repeats):
        secs = {}
        for arm in arms[k % 3:] + arms[:k % 3]:
            strategy = "naive" if arm == "naive" else "sae-reg"
            cfg = resolve_config("text-v1", strategy, "smollm2-135m", seed=a.seed)
            with whole_last_block() if arm == WHOLE_LAST_BLOCK else contextlib.nullcontext():
                r = run_text(cfg, experiences=a.experiences, score=False)
            if r.status != "ok":
                raise SystemExit(f"{arm} failed: {r.error}")
            secs[arm] = sum(p["train_seconds"] for p in r.per_experience)
            rows[arm].append(secs[arm])
        for arm in ratios:
            ratios[arm].append(secs[arm] / secs["naive"])
    med = {k: statistics.median(v) for k, v in rows.items()}
    return "\n".join([
        f"## sae-reg vs naive training time (text-v1, first {a.experiences} tasks, seed {a.seed}, "
        f"{a.repeats} rotating rounds)", "",
        "| arm | training seconds (median) | every round | ratio to naive (median) | every round |",
        "|---|---:|---|---:|---|",
        *(f"| {k} | {med[k]:.0f} | {', '.join(f'{t:.0f}' for t in v)} | "
          + (f"**{statistics.median(ratios[k]):.2f}** | {', '.join(f'{x:.2f}' for x in ratios[k])} |"
             if k in ratios else "1.00 | |") for k, v in rows.items()),
        "", f"target: sae-reg / naive <= 1.5. `{WHOLE_LAST_BLOCK}`: the ablate guide's resumed pass "
        "runs the last block at every token (the code before clbench.models.lm_rows).", "",
        f"command: `python ci/bench_lm.py cost --experiences {a.experiences} --repeats "
        f"{a.repeats} --seed {a.seed} --threads {a.threads}` "
        f"(torch threads: {torch.get_num_threads()})", ""])


def bench_guide(a: argparse.Namespace) -> str:
    """One training step's ablate-guide cost on ``--rows`` rows of the first task, side by side.

    The model (train mode, prefix warmed) runs a training forward with a tap at ``block28``;
    timed: the guide's resumed forward from that tap (scaled by 0.99, an edit as the guide's)
    plus the backward of task loss + guide, with the last block at the answer positions only
    (``fast``) and whole (:data:`WHOLE_LAST_BLOCK`), alternating; beside them a plain step's
    forward and backward. Medians over ``--repeats`` rounds."""
    torch.manual_seed(a.seed)
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=a.seed)
    model, ts = build_text_run(cfg)
    s = ts.stream
    rows = s.train_idx[0][:a.rows]
    x, y = s.x_train[rows], s.y_train[rows]
    model.train()
    ce = nn.CrossEntropyLoss()
    taps: list[torch.Tensor] = []
    hook = model.layer("block28").register_forward_hook(
        lambda _m, _i, out: taps.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        model(x)                                   # the prefix, once
    times: dict[str, list[float]] = {"fast": [], WHOLE_LAST_BLOCK: [], "plain step": []}
    for r in range(a.repeats):
        for arm in (("fast", WHOLE_LAST_BLOCK) if r % 2 == 0 else (WHOLE_LAST_BLOCK, "fast")):
            taps.clear()
            loss = ce(model(x), y)
            with whole_last_block() if arm == WHOLE_LAST_BLOCK else contextlib.nullcontext():
                t0 = time.perf_counter()
                (loss + ce(model.resume_from("block28", taps[0] * 0.99, x), y)).backward()
                times[arm].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
        taps.clear()
        t0 = time.perf_counter()
        ce(model(x), y).backward()
        times["plain step"].append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    hook.remove()
    med = {k: statistics.median(v) for k, v in times.items()}
    return "\n".join([
        f"## The ablate guide's cost per step ({a.rows} rows of {ts.task_names[0]}: "
        f"{int(x[:, 1].sum())} tokens, {int(x[:, 2].sum())} answer tokens; median of {a.repeats})",
        "", "| timed | seconds |", "|---|---:|",
        f"| guide forward + step backward, last block at the answer positions | {med['fast']:.3f} |",
        f"| guide forward + step backward, whole last block | {med[WHOLE_LAST_BLOCK]:.3f} |",
        f"| plain step: forward + backward | {med['plain step']:.3f} |", "",
        f"command: `python ci/bench_lm.py guide --rows {a.rows} --repeats {a.repeats} "
        f"--threads {a.threads}` (torch threads: {torch.get_num_threads()})", ""])


def bench_cells(a: argparse.Namespace) -> str:
    import json

    folder = Path(a.results) / "text-v1" / "smollm2-135m"
    files = sorted(folder.glob(f"*/seed{a.seed}.json"))
    if not files:
        raise SystemExit(f"no text-v1 result of seed {a.seed} under {folder}")
    lines = [f"## The lm-v1 cells of seed {a.seed} (one process, the CPU defaults)", "",
             "| strategy | train s | scoring s (6 rows) | pretrained row s | prefix s | "
             "total min | tokens / s | peak RSS GiB | state MB | threads |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in files:
        d = json.loads(f.read_text())
        if d.get("status") != "ok":
            lines.append(f"| {f.parent.name} | failed | | | | | | | | |")
            continue
        m = {k: v["value"] for k, v in d["metrics"].items()}
        pre, prefix = d.get("pretrained_eval_seconds") or 0.0, d.get("prefix", {}).get("seconds", 0.0)
        if d.get("pretrained_row_reused"):   # scored by an earlier cell of the process
            pre = 0.0
        total = m["train_seconds"] + m["eval_seconds"] + pre + prefix
        lines.append(
            f"| {f.parent.name} | {m['train_seconds']:.0f} | {m['eval_seconds']:.0f} | {pre:.0f} | "
            f"{prefix:.0f} | {total / 60:.1f} | {m['tokens_per_second']:.0f} | "
            f"{m['peak_rss_bytes'] / 2**30:.2f} | {m['state_bytes'] / 1e6:.1f} | "
            f"{d['provenance']['determinism']['torch_num_threads']} |")
    return "\n".join([*lines, "", "total: the four timed parts (model loading and tokenizing "
                       "excluded). command: `python ci/bench_lm.py cells --results "
                       f"{a.results} --seed {a.seed}`", ""])


def bench_matrix(a: argparse.Namespace) -> str:
    """One committed lm-v1 cell as a table: the pretrained row, the row after each task, and
    the held-out prose perplexity beside each (accuracy %)."""
    import json

    f = Path(a.results) / "text-v1" / "smollm2-135m" / a.strategy / f"seed{a.seed}.json"
    if not f.is_file():
        raise SystemExit(f"no result {f}; run: clbench run --stream text-v1 --model smollm2-135m "
                         f"--strategy {a.strategy} --seeds {a.seed} --results {a.results}")
    d = json.loads(f.read_text())
    tasks, ppl = d["stream"]["tasks"], d["general_ppl"]
    rows = [("nothing (pretrained)", d["random_init_accuracy"])]
    rows += [(t, r) for t, r in zip(tasks, d["accuracy_matrix"])]
    lines = [f"| after training on | {' | '.join(tasks)} | prose ppl |",
             "|---|" + "---:|" * (len(tasks) + 1)]
    for (name, row), p in zip(rows, ppl):
        lines.append(f"| {name} | {' | '.join(f'{100 * v:.0f}' for v in row)} | {p:.1f} |")
    return "\n".join([*lines, "", f"command: `python ci/bench_lm.py matrix --strategy {a.strategy} "
                       f"--seed {a.seed}` ({d['stream']['version']})", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lp = sub.add_parser("loop")
    lp.add_argument("--n-train", type=int, default=96)
    lp.add_argument("--repeats", type=int, default=3)
    lp.add_argument("--epochs", type=int, default=2)
    rp = sub.add_parser("run")
    rp.add_argument("--strategy", default="naive")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--results", default=None, help="also write the result file under this folder")
    sub.add_parser("state")
    kp = sub.add_parser("cost")
    kp.add_argument("--experiences", type=int, default=2)
    kp.add_argument("--repeats", type=int, default=2)
    kp.add_argument("--seed", type=int, default=0)
    gp = sub.add_parser("guide")
    gp.add_argument("--rows", type=int, default=16)
    gp.add_argument("--repeats", type=int, default=6)
    gp.add_argument("--seed", type=int, default=0)
    cp = sub.add_parser("cells")
    cp.add_argument("--results", default="leaderboard/results")
    cp.add_argument("--seed", type=int, default=0)
    mp = sub.add_parser("matrix")
    mp.add_argument("--results", default="leaderboard/results")
    mp.add_argument("--strategy", default="naive")
    mp.add_argument("--seed", type=int, default=0)
    for p in (lp, rp, sub.choices["state"], kp, gp, cp, mp):
        p.add_argument("--out", default=None)
        p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    text = {"loop": bench_loop, "run": bench_run, "state": bench_state, "cost": bench_cost,
            "guide": bench_guide, "cells": bench_cells, "matrix": bench_matrix}[a.what](a)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
