"""Seeded random search of method hyperparameters on a validation split, equal budget per method.

    python ci/tune.py --stream perm-fmnist --methods ewc,ewc-online,si,lwf,sae-ception,sae-reg \\
        --per-dim 2 --workers 2 --out leaderboard/tuning/perm-fmnist-v2.jsonl
    python ci/tune.py --report leaderboard/tuning/perm-fmnist-v2.jsonl --out-md leaderboard/tuning.md

Every method gets the same budget per searched dimension: with ``--per-dim N``, a method whose
space (:data:`SPACES`) has ``D`` parameters gets ``1 + N * D`` trials, so a method with six knobs
is not tuned on the budget of a method with one (``--trials T`` instead gives every method ``T``
trials, whatever its dimension). Trial 0 is the method's registered default (its family default
where one is set), trials 1.. are drawn from :data:`SPACES` with ``numpy.random.default_rng(seed)``
(one generator per method, so adding a method never changes another's draws). Each trial is one run
of the method on the stream with ``--set validation=0.2``: a seeded fifth of every experience's
training rows is held out and used for evaluation, the rest is trained on, and the test set is
never read (:func:`clbench.streams.holdout`). The objective is the final average accuracy on that
validation split. Trials are appended to a JSONL file as they finish, so a stopped search
resumes where it left off. ``--report`` turns the files into a Markdown table with the best
setting per method and stream.

``--model`` picks the model (default ``mlp``; ``smollm2-135m`` for the text stream), and
``--grid method.param=v1,v2,...`` replaces a one-parameter method's random draws by those values
(trial 0 is still the default), for a search where the order of magnitude is the question and
each trial is expensive (a ``text-v1`` trial takes 15-30 minutes on this machine)::

    python ci/tune.py --stream text-v1 --model smollm2-135m --methods ewc --workers 1 \\
        --grid ewc.ewc_lambda=1e4,1e5,1e3,1e6 --set validation=0.25 --set ewc.ewc_lambda=100 \\
        --out leaderboard/tuning/text-v1.jsonl

(the committed file's trial 0 is lambda 100, the registered default when it was made: the
``--set`` pins it; in the other trials the grid's value replaces it)

Where the run reports ``general_ppl_ratio`` (the text stream), the trial records it and the
validation accuracy matrix too.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

import numpy as np

class Sampler:
    """A named draw: ``sampler(rng)`` gives a value, ``str(sampler)`` says from what."""

    def __init__(self, desc: str, fn: Callable[[np.random.Generator], Any]) -> None:
        self.desc, self.fn = desc, fn

    def __call__(self, rng: np.random.Generator) -> Any:
        return self.fn(rng)

    def __str__(self) -> str:
        return self.desc


def log_uniform(lo: float, hi: float) -> Sampler:
    return Sampler(f"log-uniform [{lo:g}, {hi:g}]",
                   lambda rng: float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}"))


def uniform(lo: float, hi: float) -> Sampler:
    return Sampler(f"uniform [{lo:g}, {hi:g}]", lambda rng: float(f"{rng.uniform(lo, hi):.3g}"))


def choice(*values: Any) -> Sampler:
    return Sampler("one of " + "/".join(map(str, values)),
                   lambda rng: values[int(rng.integers(len(values)))])


#: the search space of each method (parameter -> sampler); keys are ``<method>.<param>`` overrides
SPACES: dict[str, dict[str, Sampler]] = {
    # rho is fixed two-sided (one-sided ratchets: strategies/sae_reg.py), gate "fired", and the
    # guide and importance forms stay at their defaults: the continuous weights are searched
    "sae-reg": {"lam": log_uniform(0.1, 1000.0), "guide_lam": log_uniform(0.01, 3.0),
                "q": uniform(0.3, 0.99)},
    "ewc": {"ewc_lambda": log_uniform(1.0, 1e5)},
    "ewc-online": {"ewc_lambda": log_uniform(1.0, 1e5), "decay_factor": uniform(0.5, 1.0)},
    "lwf": {"alpha": log_uniform(0.1, 30.0), "temperature": uniform(1.0, 4.0)},
    "si": {"si_lambda": log_uniform(1.0, 1e4)},
    "sae-ception": {"lam": log_uniform(0.01, 1.0)},
}


def draw(method: str, trials: int, seed: int) -> list[dict[str, Any]]:
    """Trial settings for ``method``: ``{}`` (the defaults) then ``trials - 1`` draws."""
    if method not in SPACES:
        raise SystemExit(f"tune.py: error: no search space for {method!r}; known: {', '.join(SPACES)}")
    rng = np.random.default_rng([seed, sum(map(ord, method))])
    out: list[dict[str, Any]] = [{}]
    for _ in range(trials - 1):
        out.append({k: s(rng) for k, s in SPACES[method].items()})
    return out


def parse_grid(specs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``["ewc.ewc_lambda=1e3,1e4"]`` -> ``{"ewc": [{"ewc_lambda": 1000.0}, {"ewc_lambda": 1e4}]}``.

    Values are parsed as the registered default's type, so they match what ``--set`` accepts.
    """
    from clbench.strategy_api import STRATEGIES  # lazy: --help answers without importing torch

    out: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        method, dot, param = key.partition(".")
        if not (sep and dot and values):
            raise SystemExit(f"tune.py: error: --grid {spec!r}: expected method.param=v1,v2,...")
        if method in out:
            raise SystemExit(f"tune.py: error: --grid {spec!r}: one grid parameter per method")
        defaults = STRATEGIES.get(method).obj.defaults if method in STRATEGIES else {}
        if param not in defaults:
            raise SystemExit(f"tune.py: error: --grid {spec!r}: {method!r} has no parameter "
                             f"{param!r}; see `clbench ls strategies --params`")
        kind = type(defaults[param])
        try:
            out[method] = [{param: kind(float(v)) if kind is int else kind(v)}
                           for v in values.split(",")]
        except ValueError:
            raise SystemExit(f"tune.py: error: --grid {spec!r}: values must be "
                             f"{kind.__name__}s") from None
    return out


def budget(method: str, trials: int, per_dim: int | None) -> int:
    """Trials for ``method``: ``1 + per_dim * D`` (``D`` = its searched parameters) when
    ``per_dim`` is given, else ``trials``."""
    if method not in SPACES:
        raise SystemExit(f"tune.py: error: no search space for {method!r}; known: {', '.join(SPACES)}")
    return trials if per_dim is None else 1 + per_dim * len(SPACES[method])


def trial_overrides(method: str, params: dict[str, Any], extra: list[str]) -> list[str]:
    """A trial's overrides, later ones winning: the search's validation split, then ``--set``,
    then the trial's own values (so ``--set`` may pin trial 0 without touching the others)."""
    return ["validation=0.2", "mono.when=off", *extra,
            *(f"{method}.{k}={v}" for k, v in params.items())]


def _one(stream: str, method: str, trial: int, params: dict[str, Any], seed: int,
         extra: list[str], data_root: str | None, model: str = "mlp") -> dict[str, Any]:
    import torch  # lazy: --help answers without importing torch

    torch.set_num_threads(1)
    from clbench import resolve_config, run  # lazy: --help answers without importing torch

    cfg = resolve_config(stream, method, model, seed, trial_overrides(method, params, extra),
                         data_root)
    t0 = time.time()
    r = run(cfg)
    acc = r.metric("final_accuracy") if r.status == "ok" else float("nan")
    extra_metrics = {}
    if r.status == "ok" and "general_ppl_ratio" in r.metrics:
        extra_metrics["val_general_ppl_ratio"] = r.metric("general_ppl_ratio")
        extra_metrics["val_accuracy_matrix"] = r.accuracy_matrix
    return {"stream": stream, "model": model, "method": method, "trial": trial, "seed": seed,
            "params": params, "validation": cfg.train["validation"], **extra_metrics,
            "resolved": cfg.strategy_params[method], "status": r.status, "error": r.error,
            "val_final_accuracy": acc,
            "val_forgetting_max": r.metric("forgetting_max") if r.status == "ok" else None,
            "seconds": round(time.time() - t0, 1)}


def search(a: argparse.Namespace) -> None:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                done.add((d["stream"], d["method"], d["trial"], d["seed"]))
    grid = parse_grid(a.grid)
    jobs = [(a.stream, m, i, p, a.seed) for m in a.methods.split(",")
            for i, p in enumerate([{}, *grid[m]] if m in grid
                                  else draw(m, budget(m, a.trials, a.per_dim), a.seed))
            if (a.stream, m, i, a.seed) not in done]
    # trial-major order: stopped at any point, every method has had the same budget (within 1)
    jobs.sort(key=lambda j: j[2])
    print(f"{len(jobs)} trials to run ({len(done)} done) on {a.workers} workers", flush=True)
    # a fresh process per trial: a perm-fmnist trial holds several GB, and a long-lived worker
    # keeps what the allocator does not give back (two such workers were OOM-killed)
    with ProcessPoolExecutor(a.workers, max_tasks_per_child=1) as pool, out.open("a") as f:
        futs = [pool.submit(_one, *j, a.set, a.data_root, a.model) for j in jobs]
        for k, fut in enumerate(as_completed(futs), 1):
            d = fut.result()
            f.write(json.dumps(d) + "\n")
            f.flush()
            print(f"[{k}/{len(jobs)}] {d['method']} #{d['trial']} {d['params']} -> "
                  f"{d['val_final_accuracy']:.4f} ({d['seconds']} s)", flush=True)


def report(files: list[str], out_md: str | None) -> str:
    rows = [json.loads(line) for fn in files for line in Path(fn).read_text().splitlines()
            if line.strip()]
    lines = ["| stream | method | searched | trials | trials per searched parameter | "
             "default (val acc %) | best (val acc %) | best setting |",
             "|---|---|---|---|---|---|---|---|"]
    for stream in sorted({r["stream"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["stream"] == stream}):
            rs = [r for r in rows if r["stream"] == stream and r["method"] == method]
            ok = [r for r in rs if r["status"] == "ok"]
            default = next((r for r in rs if r["trial"] == 0), None)
            best = max(ok, key=lambda r: (r["val_final_accuracy"], -r["trial"])) if ok else None
            d_acc = (f"{100 * default['val_final_accuracy']:.2f}" if default and
                     default["status"] == "ok" else "failed")
            setting = ", ".join(f"{k}={v}" for k, v in best["resolved"].items()
                                if k in SPACES.get(method, {})) if best else "-"
            b_acc = f"{100 * best['val_final_accuracy']:.2f} (trial {best['trial']})" if best else "-"
            fails = len(rs) - len(ok)
            dims = len(SPACES.get(method, {})) or 1
            lines.append(f"| {stream} | {method} | {dims} | {len(rs)}"
                         + (f" ({fails} failed)" if fails else "")
                         + f" | {(len(rs) - 1) / dims:.1f} + default"
                         + f" | {d_acc} | {b_acc} | {setting} |")
    methods = sorted({r["method"] for r in rows})
    # files written before the fraction was recorded used the search's default, 0.2
    fracs = sorted({float(r.get("validation", 0.2)) for r in rows})
    share = " / ".join(f"{100 * f:g}%" for f in fracs)
    trials = ["", "## Every trial", "",
              "| stream | model | method | trial | setting | val acc % | val forgetting (max) % | "
              "val general ppl ratio | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["stream"], r["method"], r["trial"])):
        setting = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in r["resolved"].items() if k in SPACES.get(r["method"], {}))
        ok = r["status"] == "ok"
        ppl = r.get("val_general_ppl_ratio")
        trials.append(
            f"| {r['stream']} | {r.get('model', 'mlp')} | {r['method']} | {r['trial']}"
            + (" (default)" if r["trial"] == 0 else "") + f" | {setting or '-'} | "
            + (f"{100 * r['val_final_accuracy']:.2f}" if ok else "failed") + " | "
            + (f"{100 * r['val_forgetting_max']:.2f}" if ok and r.get("val_forgetting_max")
               is not None else "-") + " | "
            + (f"{ppl:.3f}" if ppl is not None else "-") + " | "
            + (f"{r['seconds']:g}" if r.get("seconds") is not None else "-") + " |")
    head = ["# Hyperparameter search on validation splits", "",
            f"Made by `python ci/tune.py --report {' '.join(files)}"
            + (f" --out-md {out_md}`" if out_md else "`") + " from the trials in those files "
            "(one JSON line per trial: its settings, validation accuracy and time). Trial 0 is "
            "the registered default, the others seeded random draws; trials per searched "
            "parameter are in the table. Validation accuracy = final average accuracy on a seeded "
            f"{share} of "
            "each experience's training rows, held out of training; the test set is not read.", "",
            "Search spaces:", ""]
    for m in methods:
        head.append(f"- `{m}`: " + "; ".join(f"`{k}` {v}" for k, v in SPACES.get(m, {}).items()))
    head.append("")
    text = "\n".join(head + lines + trials) + "\n"
    if out_md:
        from clbench.atomic import write_text_atomic  # lazy: --help answers without importing torch
        write_text_atomic(out_md, text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream")
    ap.add_argument("--methods", default="sae-reg,ewc,lwf")
    ap.add_argument("--trials", type=int, default=16, help="trials per method")
    ap.add_argument("--per-dim", type=int, default=None,
                    help="instead of --trials: 1 + N x (searched parameters) trials per method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--model", default="mlp", help="model of every trial (default mlp)")
    ap.add_argument("--grid", action="append", default=[],
                    help="method.param=v1,v2,...: these values instead of random draws")
    ap.add_argument("--set", action="append", default=[], help="extra override for every trial")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="tuning.jsonl")
    ap.add_argument("--report", nargs="*", help="JSONL files to summarise instead of searching")
    ap.add_argument("--out-md", default=None)
    a = ap.parse_args(argv)
    if a.report is not None:
        print(report(a.report, a.out_md))
        return 0
    if not a.stream:
        ap.error("--stream is required for a search")
    search(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
