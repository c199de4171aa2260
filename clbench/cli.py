"""The ``clbench`` command: small verbs over the Python API.

    clbench                                       # the verbs (help); clbench --version
    clbench run                                   # the quick suite on embedded data, ranked table
    clbench run --suite cpu-v1 --dry-run          # the cells it would run (and those done)
    clbench run --suite cpu-v1 --results leaderboard/results
    clbench run --suite quick --executor process --workers 2      # cells in parallel processes
    clbench run --suite cpu-v1 --executor ray --address auto --workers 8   # on a Ray cluster
    clbench run --stream split-fmnist --strategy naive,ewc,replay+ewc --model mlp --seeds 0,1,2 \\
                --set epochs=2 --set ewc.ewc_lambda=500
    clbench rank results/ --metric forgetting_max --format md --out table.md
    clbench run --stream split-digits --strategy naive --seeds 0 --keep-checkpoints
    clbench run --stream split-digits --strategy naive --seeds 0 --log csv,tensorboard  # curves
    clbench analyze results/split-digits/mlp/naive/seed0.json      # feature-level forgetting
    clbench ls strategies --params                # each method's --set parameters, defaults
    clbench ls --json                             # every list, for scripts
    clbench ls metrics                            # every metric: direction, header, formula
    clbench schema result                         # the JSON Schema result files are checked against
    clbench leaderboard leaderboard/results --name cpu-v1 --suite cpu-v1   # README, CSV, figures, index.html
    clbench check results/ --baseline leaderboard/baselines/quick.json   # exit 1 on a regression
    clbench submit strategies/my_method.py --suite cpu-v1 --results leaderboard/results

A user mistake (unknown name, bad override, missing data) prints one ``clbench: error: ...``
line and exits with status 2.

Each ``cmd_*`` verb imports its stage inside the function (marked ``# lazy``): parsing the
arguments and printing help must not import torch and Avalanche, which take seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from clbench.atomic import write_text_atomic
from clbench.errors import ClbenchError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        raise ClbenchError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ClbenchError(f"--seeds {text!r}: seed {twice[0]} is given twice; a seed is run once, "
                           "give each seed once")
    return seeds


class _Parser(argparse.ArgumentParser):
    """argparse with clbench's one-line error format (``clbench: error: ...``, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"clbench: error: {self.prog.split()[-1] if ' ' in self.prog else ''}"
              f"{': ' if ' ' in self.prog else ''}{message}; see '{self.prog} --help'", file=sys.stderr)
        sys.exit(2)


LISTS = ("streams", "strategies", "models", "suites", "metrics")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; importing nothing heavier than argparse (``--help`` is instant)."""
    from clbench.version import __version__

    ap = _Parser(prog="clbench", description="Continual-learning benchmark harness. The main "
                 "verb is 'clbench run' (with no options: the quick suite on embedded data).")
    ap.add_argument("--version", action="version", version=f"clbench {__version__}")
    sub = ap.add_subparsers(dest="verb", parser_class=_Parser)

    ls = sub.add_parser("ls", help="list streams, strategies, models, suites or metrics")
    ls.add_argument("what", nargs="?", choices=LISTS, default=None,
                    help="one list (default: all of them)")
    ls.add_argument("--json", action="store_true", help="one JSON object {list: [entry, ...]} "
                                                        "for scripts")
    ls.add_argument("--params", action="store_true",
                    help="with strategies: each method's parameters, defaults and per-family "
                         "defaults (the --set <method>.<param> keys)")

    r = sub.add_parser("run", help="run a suite or a single grid of cells (default: the quick suite)")
    r.add_argument("--suite", help="a built-in suite name or a suite .yaml file")
    r.add_argument("--stream", help="stream name(s), comma-separated")
    r.add_argument("--strategy", help="strategy name(s), comma-separated; join methods with +")
    r.add_argument("--model", default=None, help="model name(s), comma-separated (default mlp)")
    r.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. epochs=3, ewc.ewc_lambda=500, model.hidden=200,200")
    r.add_argument("--results", default="results", help="results folder (default results/)")
    r.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="where runs train and evaluate (default cpu; the same as --set device=)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the cells this command would run (and those already done); run "
                        "nothing")
    r.add_argument("--data-root", default=None, help="folder holding datasets (torchvision layout)")
    r.add_argument("--download", action="store_true", help="download missing datasets (needs a network)")
    r.add_argument("--task-incremental", action="store_true", help="multi-head, task labels given")
    r.add_argument("--keep-checkpoints", action="store_true",
                   help="save the model after each experience next to the result "
                        "(seed<k>.ckpt/exp<j>.pt; a language model: its trained part only), "
                        "for 'clbench analyze'")
    r.add_argument("--no-resume", dest="resume", action="store_false",
                   help="re-run cells whose result already exists")
    r.add_argument("--metric", default="final_accuracy", help="metric of the final ranked table")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per run (default: torch's choice); recorded in results")
    r.add_argument("--log", default=None, metavar="LOGGERS",
                   help="training curves through Avalanche's loggers, comma-separated: csv, "
                        "tensorboard, wandb (into <result>.logs/<logger>/; see clbench.run.logs)")
    r.add_argument("--executor", default="local",
                   help="where cells run: local (in turn, default), process (a local process pool) "
                        "or ray (Ray tasks; pip install 'clbench[ray]')")
    r.add_argument("--workers", type=int, default=None,
                   help="cells run at once by process/ray (default: all cores / cluster CPUs)")
    r.add_argument("--address", default=None,
                   help="an existing Ray cluster for --executor ray, e.g. auto or HOST:6379 "
                        "(default: start a local one)")

    k = sub.add_parser("rank", help="ranked tables from a results folder")
    k.add_argument("results", help="results folder")
    k.add_argument("--metric", default="final_accuracy")
    k.add_argument("--format", default="md", choices=["md", "csv"])
    k.add_argument("--out", default=None, help="write the table to this file instead of stdout")
    k.add_argument("--title", default=None, help="a heading above the Markdown tables")
    k.add_argument("--include-reference", action="store_true",
                   help="rank joint and cumulative (upper bounds, shown apart by default)")

    z = sub.add_parser("analyze", help="feature-level forgetting of a run kept with "
                                       "--keep-checkpoints (crosscoder, report.html)")
    z.add_argument("run", help="a result JSON with checkpoints")
    z.add_argument("--layers", default=None,
                   help="hook layers, comma-separated (default: up to 3 ending at the head input)")
    z.add_argument("--probe-size", type=int, default=4000, help="test rows probed (default 4000)")
    z.add_argument("--k", type=int, default=32, help="active crosscoder latents per row (default 32)")
    z.add_argument("--expansion", type=int, default=4,
                   help="crosscoder latents = expansion x the widest layer (default 4)")
    z.add_argument("--steps", type=int, default=1000, help="crosscoder training steps (default 1000)")
    z.add_argument("--k-aux", type=int, default=None,
                   help="dead latents AuxK reads per row (default: half the summed layer widths; "
                        "lower it for a language model's wide layers: it sets each step's cost)")
    z.add_argument("--lr", type=float, default=1e-3, help="crosscoder Adam learning rate")
    z.add_argument("--seed", type=int, default=0, help="seed of the probe and the crosscoder")
    z.add_argument("--top", type=int, default=8, help="features shown in the report (default 8)")
    z.add_argument("--heldout", type=float, default=0.2,
                   help="fraction of probe rows held out of the crosscoder's fit (default 0.2)")
    z.add_argument("--null", action="store_true",
                   help="null model: the first checkpoint repeated (into <result>.analysis_null/)")
    z.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    z.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1): the crosscoder's fit, and so every number, "
                        "depends on it; recorded in the result")
    z.add_argument("--out", default=None, help="output folder (default <result>.analysis/)")
    z.add_argument("--data-root", default=None, help="dataset folder, if not the run's")
    z.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_leaderboard_verbs(sub)
    from clbench.sae.cli import add_sae_verb
    add_sae_verb(sub)
    return ap


def _add_leaderboard_verbs(sub: Any) -> None:
    """``leaderboard``, ``check`` and ``submit`` (see clbench.board.leaderboard, .check, .submit)."""
    lb = sub.add_parser("leaderboard", help="write a leaderboard folder: README.md, CSV, "
                                            "figures and index.html")
    lb.add_argument("results", help="results folder")
    lb.add_argument("--name", default="leaderboard", help="its name: the CSV's file name and the "
                                                          "title (e.g. cpu-v1)")
    lb.add_argument("--out-dir", default=None, help="where to write (default: the results "
                                                    "folder's parent): a leaderboard folder "
                                                    "(marked by clbench-leaderboard.json) or a "
                                                    "new or empty one")
    lb.add_argument("--init", action="store_true", help="make --out-dir a leaderboard folder "
                    "even though it holds other files (the board's files there are replaced)")
    lb.add_argument("--metric", default="final_accuracy", help="metric to rank on")
    lb.add_argument("--suite", default=None, help="only the results of this suite's cells "
                    "(its streams, models and seeds), e.g. cpu-v1")
    lb.add_argument("--title", default=None, help="page title (default 'clbench leaderboard: NAME')")
    lb.add_argument("--include-reference", action="store_true",
                    help="rank joint and cumulative (upper bounds, shown apart by default) and "
                         "include them in the Friedman / Nemenyi test")

    c = sub.add_parser("check", help="compare results with a baseline; exit 1 on a regression")
    c.add_argument("results", help="results folder")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--baseline", help="baseline file to compare with")
    g.add_argument("--write-baseline", metavar="FILE", help="write a baseline made from RESULTS")
    c.add_argument("--metric", default="final_accuracy",
                   help="metrics to compare, comma-separated (a baseline stores final_accuracy, "
                        "avg_incremental_accuracy, forgetting_max, bwt)")
    c.add_argument("--z", type=float, default=None,
                   help="tolerance in standard errors of the difference (default 5)")
    c.add_argument("--floor", type=float, default=None,
                   help="smallest tolerance, in metric units (default 0.03)")

    s = sub.add_parser("submit", help="run a suite for a new method file, verify the results "
                                      "and add them to the leaderboard",
                       description="Submitting RUNS THE METHOD FILE'S CODE (in separate worker "
                                   "processes, with your permissions): read a file before "
                                   "submitting it. The suite's cells are run (or read with "
                                   "--from), every result checked, and randomly chosen seeds "
                                   "(at least one per stream) re-run and compared.")
    s.add_argument("file", help="the method's .py file (see strategies/TEMPLATE.py)")
    s.add_argument("--suite", default="cpu-v1", help="suite name or .yaml file (default cpu-v1)")
    s.add_argument("--results", default="leaderboard/results", help="the leaderboard's results")
    s.add_argument("--from", dest="from_dir", default=None,
                   help="take the suite's results from this folder instead of running them")
    s.add_argument("--out-dir", default=None, help="leaderboard folder to regenerate "
                                                   "(default: the results folder's parent)")
    s.add_argument("--data-root", default=None, help="folder holding datasets")
    s.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    sc = sub.add_parser("schema", help="print the JSON Schema of a result file or a suite file")
    sc.add_argument("which", choices=("result", "suite"),
                    help="result (clbench.result/1) or suite")


def cmd_schema(a: argparse.Namespace) -> int:
    """Print a published schema (clbench/schemas/<which>.schema.json) as it is shipped."""
    from clbench.schemas import schema_text

    print(schema_text(a.which), end="")
    return 0


def cmd_leaderboard(a: argparse.Namespace) -> int:
    # lazy: see the module docstring
    from clbench.board.leaderboard import build_leaderboard

    out = Path(a.out_dir) if a.out_dir else Path(a.results).parent
    for p in build_leaderboard(a.results, out, a.name, a.metric, a.title, suite=a.suite,
                               init=a.init, include_reference=a.include_reference):
        print(p)
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    # lazy: see the module docstring
    from clbench.board.check import (FLOOR, Z, collect, compare, failing, load_baseline, render_rows,
                               summary, write_baseline)
    from clbench.results import load_results

    results = load_results(a.results)
    current = collect(results)
    if a.write_baseline:
        path = write_baseline(results, a.write_baseline, source=a.results)
        print(f"baseline of {len(current)} cells from {a.results} written to {path}")
        return 0
    z = Z if a.z is None else a.z
    floor = FLOOR if a.floor is None else a.floor
    rows = compare(load_baseline(a.baseline), current, tuple(_csv(a.metric)), z, floor)
    print(render_rows(rows))
    print(summary(rows))
    return 1 if failing(rows) else 0


def _set_threads(n: int) -> None:
    """torch's intra-op thread count for this process; a count below 1 is a usage error."""
    if n < 1:
        raise ClbenchError(f"--threads {n}: must be at least 1")
    import torch  # lazy: see the module docstring
    torch.set_num_threads(n)


def cmd_submit(a: argparse.Namespace) -> int:
    from clbench.board.submit import submit  # lazy: see the module docstring

    _set_threads(a.threads)
    s = submit(a.file, a.suite, a.results, a.from_dir, a.data_root, a.out_dir,
               show_progress=not a.quiet, threads=a.threads)
    print(f"accepted {s.strategy!r}: {len(s.results)} results added to {a.results} "
          f"(re-run {', '.join(s.reruns)}: max |diff| {s.rerun_max_diff:.2g}); regenerated:")
    for p in s.outputs:
        print(f"  {p}")
    return 0


def _entries(what: str) -> list[dict[str, Any]]:
    """One list of ``clbench ls`` as plain JSON-able dicts (name first)."""
    # lazy: see the module docstring
    from clbench.metrics.registry import listed
    from clbench.models import MODELS
    from clbench.strategy_api import STRATEGIES
    from clbench.streams import STREAMS
    from clbench.suites import load_suite, suite_names

    if what == "metrics":  # clbench.metrics.registry
        return [{"name": m.name, "direction": m.direction, "header": m.header,
                 "formula": m.formula} for m in listed()]
    if what == "suites":
        out = []
        for n in suite_names():
            s = load_suite(n)
            out.append({"name": n, "description": s.description, "version": s.version,
                        "streams": s.streams, "models": s.models, "strategies": s.strategies,
                        "seeds": s.seeds, "overrides": s.overrides,
                        "expected_minutes": s.expected_minutes,
                        "exclude": [vars(x) for x in s.exclude]})
        return out
    if what == "strategies":
        return [{"name": e.name, "description": e.description, "kind": e.obj.kind,
                 "params": {k: {"default": v, "type": _type_name(v),
                                "family_defaults": {f: d[k] for f, d in e.obj.family_defaults.items()
                                                    if k in d}}
                            for k, v in e.obj.defaults.items()},
                 "checked": e.obj.check is not None} for e in STRATEGIES]
    reg = {"streams": STREAMS, "models": MODELS}[what]
    return [{"name": e.name, "description": e.description,
             **{k: v for k, v in e.meta.items() if isinstance(v, (str, int, float, bool))}}
            for e in reg]


def _type_name(value: Any) -> str:
    return "int list" if isinstance(value, tuple) else type(value).__name__


def _ls_lines(what: str, entries: list[dict[str, Any]], params: bool) -> list[str]:
    """``entries`` of one list as the text ``clbench ls`` prints."""
    if what == "metrics":
        width, hwidth = (max(len(m[k]) for m in entries) for k in ("name", "header"))
        return [f"{m['name']:<{width}}  {m['direction']:<6}  {m['header']:<{hwidth}}  {m['formula']}"
                for m in entries]
    if what == "suites":
        return [f"{s['name']:<14} {s['description']} (~{s['expected_minutes']} min)"
                + (" [" + "; ".join(f"without {x['strategy']} on {x['stream']}: {x['reason']}"
                                    for x in s["exclude"]) + "]" if s["exclude"] else "")
                for s in entries]
    lines = []
    for e in entries:
        lines.append(f"{e['name']:<16} {e['description']}")
        if params and what == "strategies":
            for k, p in e["params"].items():
                fam = "".join(f", {f}: {v!r}" for f, v in p["family_defaults"].items())
                lines.append(f"    {e['name']}.{k} = {p['default']!r} ({p['type']}{fam})")
            if e["checked"]:
                lines.append("    (values are checked when a run's config is resolved)")
    return lines


def cmd_ls(a: argparse.Namespace) -> int:
    import json

    if a.params and a.what != "strategies":
        raise ClbenchError("--params lists method parameters: use 'clbench ls strategies --params'")
    whats = [a.what] if a.what else list(LISTS)
    lists = {w: _entries(w) for w in whats}
    if a.json:
        print(json.dumps(lists, indent=1, default=str))
        return 0
    for w in whats:
        if len(whats) > 1:
            print(f"# {w}")
        print("\n".join(_ls_lines(w, lists[w], a.params)))
    return 0


def _grid(a: argparse.Namespace) -> tuple[list[Any], list[str]]:
    """The cells of ``clbench run`` (a suite, or --stream x --strategy x models x seeds) and the
    overrides every cell gets (method-scoped ones reach only their method's cells)."""
    # lazy: see the module docstring
    from clbench.suites import Cell, load_suite

    single = a.stream or a.strategy
    if a.suite and single:
        raise ClbenchError("give either --suite or --stream/--strategy, not both")
    if single and not (a.stream and a.strategy):
        raise ClbenchError("a single grid needs both --stream and --strategy (and optionally --model)")
    if single:
        from clbench.streams import STREAMS
        seeds = _seeds(a.seeds or "0,1,2")
        # without --model, each stream's own default (mlp; smollm2-135m for text streams)
        cells = [Cell(st, m, s, seed) for st in _csv(a.stream) for seed in seeds
                 for m in (_csv(a.model) if a.model else [STREAMS.get(st).meta.get("model", "mlp")])
                 for s in _csv(a.strategy)]
        overrides = list(a.overrides)
    else:
        suite = load_suite(a.suite or "quick")
        seeds = _seeds(a.seeds) if a.seeds else suite.seeds
        models = _csv(a.model) if a.model else suite.models
        cells = suite.cells(seeds, models)   # stream-major: one build per seed
        overrides = [*suite.overrides, *a.overrides]
    if a.device is not None:
        if a.device == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise ClbenchError("--device cuda: this machine has no usable CUDA GPU "
                                   "(torch sees none); use --device cpu")
        overrides = [f"device={a.device}", *overrides]
    if a.keep_checkpoints:
        overrides = [*overrides, "keep_checkpoints=true"]
    return cells, overrides


def cmd_run(a: argparse.Namespace) -> int:
    # lazy: see the module docstring
    from clbench.board.rank import rank_results, render
    from clbench.results import load_result
    from clbench.run.logs import log_spec
    from clbench.run.plan import is_done, plan, refuse_done_without_checkpoints
    from clbench.run.sweep import run_cells
    from clbench.metrics.registry import metric

    metric(a.metric)  # a typo fails now, not after the sweep
    log = log_spec(a.log) if a.log is not None else None   # a missing package fails now too
    if a.threads is not None:
        _set_threads(a.threads)
    cells, overrides = _grid(a)
    if a.dry_run:  # every cell resolved (so a typo fails here too), nothing run or written
        planned = plan(cells, overrides, a.results, a.data_root, a.task_incremental)
        done = [a.resume and is_done(p.path) for p in planned]
        for p, d in zip(planned, done):
            c = p.cell
            print(f"{'done' if d else 'run':<4}  {c.stream} {c.model} {c.strategy}{p.tag} "
                  f"seed {c.seed}  -> {p.path}")
        print(f"{len(planned)} cells: {len(planned) - sum(done)} to run, {sum(done)} done "
              "(dry run: nothing was run)")
        return 0
    if a.keep_checkpoints and a.resume:
        refuse_done_without_checkpoints(plan(cells, overrides, a.results, a.data_root,
                                             a.task_incremental))
    paths = run_cells(cells, a.results, overrides, a.data_root, a.resume, a.task_incremental,
                      a.download, show_progress=not a.quiet, executor=a.executor,
                      workers=a.workers, address=a.address, threads=a.threads, log=log)
    results = [load_result(p) for p in paths if p.exists()]
    failed = [r for r in results if r["status"] != "ok"]
    print(render(rank_results(results, a.metric), "md"))
    print(f"{len(results)} results in {a.results}/" + (f", {len(failed)} failed" if failed else ""))
    return 0


def cmd_analyze(a: argparse.Namespace) -> int:
    # lazy: see the module docstring
    from clbench.analyze import AnalyzeSettings, CrosscoderSettings, analyze
    from clbench.analyze.report import flags_text

    _set_threads(a.threads)
    settings = AnalyzeSettings(
        layers=_csv(a.layers) if a.layers else None, probe_size=a.probe_size, top=a.top,
        device=a.device, crosscoder=CrosscoderSettings(expansion=a.expansion, k=a.k,
                                                       steps=a.steps, lr=a.lr, seed=a.seed,
                                                       k_aux=a.k_aux),
        heldout=a.heldout, null=a.null)
    block = analyze(a.run, settings, out=a.out, data_root=a.data_root, progress=not a.quiet)
    for name, value in block["summary"].items():
        print(f"{name:<36} {'-' if value is None else f'{value:.4f}'}")
    print(f"{'run flags':<36} {flags_text(block['flags'])}" + ("  (null model)" if a.null else ""))
    print(f"report: {Path(a.run).parent / block['report']}")
    return 0


def cmd_rank(a: argparse.Namespace) -> int:
    # lazy: see the module docstring
    from clbench.board.rank import rank_results, render
    from clbench.results import load_results

    text = render(rank_results(load_results(a.results), a.metric, a.include_reference), a.format)
    if a.title and a.format == "md":
        cmd = " ".join(["clbench", "rank", a.results, "--metric", a.metric, "--title", repr(a.title)]
                       + (["--include-reference"] if a.include_reference else [])
                       + (["--out", a.out] if a.out else []))
        text = f"# {a.title}\n\nGenerated by `{cmd}`.\n\n" + text
    if a.out:
        write_text_atomic(a.out, text)
    else:
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        if a.verb is None:
            ap.print_help()
            return 0
        if a.verb == "ls":
            return cmd_ls(a)
        if a.verb == "rank":
            return cmd_rank(a)
        if a.verb in ("leaderboard", "check", "submit"):
            return {"leaderboard": cmd_leaderboard, "check": cmd_check,
                    "submit": cmd_submit}[a.verb](a)
        if a.verb == "analyze":
            return cmd_analyze(a)
        if a.verb == "schema":
            return cmd_schema(a)
        if a.verb == "sae":
            from clbench.sae.cli import cmd_sae
            return cmd_sae(a)
        if a.verb == "run":
            return cmd_run(a)
    except ClbenchError as e:
        print(f"clbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clbench: interrupted; finished cells are saved, run again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
