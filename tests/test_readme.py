"""The README is executable truth: its shell blocks, its Python snippets and its method example
run here, so an example cannot silently break.

Every fenced ``bash`` / ``python`` block of README.md is preceded by a marker comment:
``<!-- test -->`` (run here, as below), ``<!-- test: method -->`` (the "Adding a method" file:
written out, put through the registry-wide checks and ``clbench submit``) or
``<!-- test: skip (why) -->``. In a ``<!-- test -->`` shell block, each command (continuation
lines joined, comments dropped) is checked on tiny settings, in a temp folder holding a small
real ``results/``:

* ``clbench run ...``: run with ``--dry-run`` (every cell resolved: names, overrides, suite);
* ``clbench`` with no verb, ``ls`` or ``rank``: run as written (a ``rank`` of a feature-forgetting
  metric, which needs ``clbench analyze``, is parsed only);
* any other verb (``analyze``, ``leaderboard``, ``check``, ``submit``, ``sae``): parsed by the
  real parser (verb, flags and choices), not run;
* ``python ci/<script>.py ...``: the script exists and its source defines every ``--flag`` (and
  the sub-command) the line uses (running each script's ``--help`` imports torch: seconds each);
* set-up lines (``bash ci/setup.sh``, ``source``, ``python -m pytest``, ``ray start``) are not run,
  nor lines that need a GPU on a machine without one.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from clbench.cli import build_parser, main
from clbench.strategy_api import STRATEGIES
from clbench.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- (test(?:: [^>]*)?) -->\s*$")


@dataclass(frozen=True)
class Block:
    marker: str | None
    lang: str
    text: str
    line: int


def readme_blocks() -> list[Block]:
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        out.append(Block(marker.group(1) if marker else None, m.group(1), m.group(2),
                         text[:m.start()].count("\n") + 1))
    return out


def commands(block: Block) -> list[list[str]]:
    """The block's commands as argv lists (``\\`` continuations joined, comments dropped)."""
    joined = block.text.replace("\\\n", " ")
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


TESTED = [b for b in readme_blocks() if b.marker == "test"]
SHELL = [(b.line, argv) for b in TESTED if b.lang == "bash" for argv in commands(b)]


def test_every_code_block_is_marked() -> None:
    blocks = [b for b in readme_blocks() if b.lang in ("bash", "python")]
    assert len(blocks) >= 10
    bare = [b.line for b in blocks if b.marker is None]
    assert not bare, f"README.md blocks at lines {bare} need <!-- test --> or <!-- test: skip (why) -->"
    assert sum(b.marker == "test: method" for b in blocks) == 1


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp folder with a small real ``results/`` (naive and replay on split-digits, 1 epoch)."""
    d = tmp_path_factory.mktemp("readme")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--stream", "split-digits", "--strategy", "naive,replay", "--seeds", "0",
                     "--set", "epochs=1", "--set", "mono.when=off", "--threads", "1", "--quiet",
                     "--results", str(d / "results")]) == 0
    old = Path.cwd()
    os.chdir(d)
    try:
        yield d
    finally:
        os.chdir(old)


def _needs_gpu(argv: list[str]) -> bool:
    line = " ".join(argv)
    return ("device=cuda" in line or "--device cuda" in line) and not torch.cuda.is_available()


def _clbench(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = main(args)
    except SystemExit as e:  # --help, --version
        rc = int(e.code or 0)
    return rc, out.getvalue()


@pytest.mark.parametrize("line, argv", SHELL, ids=[f"L{n}:{' '.join(a)[:60]}" for n, a in SHELL])
def test_readme_command(line: int, argv: list[str], workdir: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    prog, args = argv[0], argv[1:]
    if prog.endswith("clbench"):
        verb = args[0] if args and not args[0].startswith("-") else None
        if verb == "rank" and any(a.startswith("ff_") for a in args):
            verb = "rank (of an analysis)"
        if verb == "run":
            if _needs_gpu(argv):
                pytest.skip("needs a CUDA GPU")
            rc, out = _clbench([*args, "--dry-run"])
            assert rc == 0, capsys.readouterr().err
            assert "(dry run: nothing was run)" in out
        elif verb in (None, "ls", "rank"):
            rc, out = _clbench(args)
            assert rc == 0, capsys.readouterr().err
            written = args[args.index("--out") + 1] if "--out" in args else None
            assert (workdir / written).read_text().strip() if written else out.strip()
        else:
            try:
                build_parser().parse_args(args)
            except SystemExit:
                pytest.fail(f"README line {line}: {' '.join(argv)} does not parse: "
                            f"{capsys.readouterr().err}")
        return
    if prog.endswith("python") and args and args[0].startswith("ci/"):
        script = ROOT / args[0]
        assert script.is_file(), f"README line {line}: no {args[0]}"
        source = script.read_text()
        words = [a.split("=")[0] for a in args[1:] if a.startswith("--")]
        if len(args) > 1 and args[1].isidentifier():   # a sub-command: bench.py overhead
            words.append(args[1])
        for word in words:
            assert f'"{word}"' in source or f"'{word}'" in source, (
                f"README line {line}: {args[0]} defines no {word}")
        return
    setup = {"bash", "source", "ray"}
    assert prog in setup or (prog.endswith("python") and args[:1] == ["-m"]), (
        f"README line {line}: don't know how to test {' '.join(argv)}")


@pytest.mark.parametrize("block", [b for b in TESTED if b.lang == "python"],
                         ids=lambda b: f"L{b.line}")
def test_readme_python_snippet(block: Block, workdir: Path) -> None:
    """A snippet leaves a ``result`` (a RunResult that succeeded) or a ``df`` (the frame of the
    workdir's results, ``clbench.results_frame``)."""
    ns: dict[str, Any] = {"__name__": "readme_snippet"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block.text, f"README.md:{block.line}", "exec"), ns)  # noqa: S102  (our README)
    if "df" in ns:   # a results_frame snippet: the frame of the workdir's results
        assert len(ns["df"]) > 0 and set(ns["df"].seed) == {0}, ns["df"]
        return
    assert "result" in ns and ns["result"].status == "ok", ns.get("result")


def test_quick_suite_is_described_as_it_is() -> None:
    """The README's strategy count of ``quick`` is the suite's, and the built-in methods the
    suite leaves out are named where it is described."""
    text = README.read_text()
    quick = load_suite("quick")
    start = text.index("`clbench run` with no other arguments runs the `quick` suite")
    intro = text[start:text.index("```", start)]
    row = next(line for line in text.splitlines() if line.startswith("| `quick` |"))
    for where in (intro, row):
        assert f"{len(quick.strategies)} strategies" in where, where
    left_out = sorted(set(STRATEGIES.names()) - set(quick.strategies))
    assert left_out, "quick now runs every method: describe it so"
    for name in left_out:
        assert f"`{name}`" in intro, f"the quick suite's description should say it leaves out {name}"
    assert "every built-in strategy" not in quick.description
    assert "clbench run --threads 1" in intro, "the excerpt reproduces at 1 thread: say so"


# --- the "Adding a method" example -----------------------------------------------------------------

@pytest.fixture()
def method_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's method written to a file (what it registers is gone after the test)."""
    block = next(b for b in readme_blocks() if b.marker == "test: method")
    path = tmp_path / "my_method.py"
    path.write_text(block.text)
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))
    return path


def test_method_example_passes_the_registry_wide_checks(method_file: Path,
                                                        digits_stream: Any) -> None:
    """What tests/strategies/test_registry.py asks of every method, for the README's: it runs
    class- and task-incremental, alone and combined, and reports its state."""
    from clbench import resolve_config, run
    from clbench.streams import build_stream

    from clbench.board.submit import import_strategy

    name = import_strategy(method_file)
    for combo in (name, f"{name}+lwf"):
        r = run(resolve_config("split-digits", combo, "mlp", 0, ["epochs=1"]), stream=digits_stream)
        assert r.status == "ok", r.error
        assert len(r.accuracy_matrix) == digits_stream.n_experiences
        assert 0.0 <= r.metric("final_accuracy") <= 1.0 and r.metric("state_bytes") > 0
    til = build_stream("split-digits", seed=0, task_incremental=True)
    r = run(resolve_config("split-digits", name, "mlp", 0,
                           ["epochs=1", "task_incremental=true", "mono.when=off"]), stream=til)
    assert r.status == "ok" and r.accuracy_matrix[0][0] > 0.6, r.error


SUITE = """name: readme-method
version: "1"
description: the embedded streams at the leaderboard's settings, one seed (README test)
streams: [split-digits, split-mnist1d]
models: [mlp]
strategies: [naive]
seeds: [0]
overrides: ["mono.when=off"]
"""


def test_method_example_is_accepted_by_submit(method_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``clbench submit`` at the suite's own training settings (10 epochs on the embedded streams,
    where EWC at lambda 5000 diverged) on a board of the committed naive and replay results."""
    board = tmp_path / "board" / "results"
    for stream in ("split-digits", "split-mnist1d"):
        for s in ("naive", "replay"):
            src = ROOT / "leaderboard" / "results" / stream / "mlp" / s / "seed0.json"
            (board / stream / "mlp" / s).mkdir(parents=True)
            shutil.copy(src, board / stream / "mlp" / s / "seed0.json")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    rc = main(["submit", str(method_file), "--suite", str(suite), "--results", str(board),
               "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "accepted 'my-replay'" in captured.out
    published = sorted(p.parts[-4] for p in board.glob("*/mlp/my-replay*/seed0.json"))
    assert published == ["split-digits", "split-mnist1d"]
