"""The ``clbench`` command: small verbs over the Python API.

    clbench run                                   # the quick suite on embedded data, ranked table
    clbench run --suite cpu-v1 --results leaderboard/results
    clbench run --stream split-fmnist --strategy naive,ewc,replay+ewc --model mlp --seeds 0,1,2 \\
                --set epochs=2 --set ewc.ewc_lambda=500
    clbench rank results/ --metric forgetting_max --format md --out table.md
    clbench ls strategies

A user mistake (unknown name, bad override, missing data) prints one ``clbench: error: ...``
line and exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from clbench.errors import ClbenchError


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise ClbenchError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


class _Parser(argparse.ArgumentParser):
    """argparse with clbench's one-line error format (``clbench: error: ...``, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"clbench: error: {self.prog.split()[-1] if ' ' in self.prog else ''}"
              f"{': ' if ' ' in self.prog else ''}{message}; see '{self.prog} --help'", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="clbench", description="Continual-learning benchmark harness.")
    sub = ap.add_subparsers(dest="verb", parser_class=_Parser)

    ls = sub.add_parser("ls", help="list registered streams, strategies, models or suites")
    ls.add_argument("what", choices=["streams", "strategies", "models", "suites"])

    r = sub.add_parser("run", help="run a suite or a single grid of cells (default: the quick suite)")
    r.add_argument("--suite", help="a built-in suite name or a suite .yaml file")
    r.add_argument("--stream", help="stream name(s), comma-separated")
    r.add_argument("--strategy", help="strategy name(s), comma-separated; join methods with +")
    r.add_argument("--model", default=None, help="model name(s), comma-separated (default mlp)")
    r.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. epochs=3, ewc.ewc_lambda=500, model.hidden=200,200")
    r.add_argument("--results", default="results", help="results folder (default results/)")
    r.add_argument("--data-root", default=None, help="folder holding datasets (torchvision layout)")
    r.add_argument("--download", action="store_true", help="download missing datasets (needs a network)")
    r.add_argument("--task-incremental", action="store_true", help="multi-head, task labels given")
    r.add_argument("--no-resume", dest="resume", action="store_false",
                   help="re-run cells whose result already exists")
    r.add_argument("--metric", default="final_accuracy", help="metric of the final ranked table")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per run (default: torch's choice); recorded in results")

    k = sub.add_parser("rank", help="ranked tables from a results folder")
    k.add_argument("results", help="results folder")
    k.add_argument("--metric", default="final_accuracy")
    k.add_argument("--format", default="md", choices=["md", "csv"])
    k.add_argument("--out", default=None, help="write the table to this file instead of stdout")
    k.add_argument("--title", default=None, help="a heading above the Markdown tables")
    return ap


def cmd_ls(what: str) -> int:
    import clbench  # noqa: F401  (registers everything)
    from clbench.data import DATASETS  # noqa: F401
    from clbench.models import MODELS
    from clbench.strategy_api import STRATEGIES
    from clbench.streams import STREAMS
    from clbench.suites import load_suite, suite_names

    if what == "suites":
        for n in suite_names():
            s = load_suite(n)
            print(f"{n:<14} {s.description} (~{s.expected_minutes} min)")
        return 0
    reg = {"streams": STREAMS, "strategies": STRATEGIES, "models": MODELS}[what]
    for e in reg:
        print(f"{e.name:<16} {e.description}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from clbench.rank import rank_results, render
    from clbench.results import load_result
    from clbench.suites import Cell, load_suite
    from clbench.sweep import run_cells

    if a.threads is not None:
        if a.threads < 1:
            raise ClbenchError(f"--threads {a.threads}: must be at least 1")
        import torch
        torch.set_num_threads(a.threads)
    single = a.stream or a.strategy
    if a.suite and single:
        raise ClbenchError("give either --suite or --stream/--strategy, not both")
    if single and not (a.stream and a.strategy):
        raise ClbenchError("a single grid needs both --stream and --strategy (and optionally --model)")
    if single:
        models = _csv(a.model or "mlp")
        seeds = _seeds(a.seeds or "0,1,2")
        cells = [Cell(st, m, s, seed) for st in _csv(a.stream) for seed in seeds
                 for m in models for s in _csv(a.strategy)]
        overrides = list(a.overrides)
    else:
        suite = load_suite(a.suite or "quick")
        seeds = _seeds(a.seeds) if a.seeds else suite.seeds
        models = _csv(a.model) if a.model else suite.models
        cells = [Cell(st, m, a, s) for st in suite.streams for s in seeds
                 for m in models for a in suite.strategies]  # stream-major: one build per seed
        overrides = [*suite.overrides, *a.overrides]
    paths = run_cells(cells, a.results, overrides, a.data_root, a.resume, a.task_incremental,
                      a.download, show_progress=not a.quiet)
    results = [load_result(p) for p in paths if p.exists()]
    failed = [r for r in results if r["status"] != "ok"]
    print(render(rank_results(results, a.metric), "md"))
    print(f"{len(results)} results in {a.results}/" + (f", {len(failed)} failed" if failed else ""))
    return 0


def cmd_rank(a: argparse.Namespace) -> int:
    from clbench.rank import rank_results, render
    from clbench.results import load_results

    text = render(rank_results(load_results(a.results), a.metric), a.format)
    if a.title and a.format == "md":
        cmd = " ".join(["clbench", "rank", a.results, "--metric", a.metric, "--title", repr(a.title)]
                       + (["--out", a.out] if a.out else []))
        text = f"# {a.title}\n\nGenerated by `{cmd}`.\n\n" + text
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    else:
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        if a.verb == "ls":
            return cmd_ls(a.what)
        if a.verb == "rank":
            return cmd_rank(a)
        if a.verb in (None, "run"):
            if a.verb is None:
                a = ap.parse_args(["run", *(argv or [])])
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
