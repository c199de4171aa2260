"""The shape of the package: folders by stage, every package installed, no import circle."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"run": ["config", "plan", "runner", "sweep", "executors", "bridge", "fastdata", "cost",
                  "provenance", "mono", "plugins", "lock"],
          "board": ["rank", "stats", "plots", "page", "leaderboard", "check", "submit"]}


def module_files() -> dict[str, Path]:
    """Module name -> file for clbench (with strategies/ as clbench.strategies)."""
    out = {}
    for base, prefix in ((ROOT / "clbench", "clbench"), (ROOT / "strategies", "clbench.strategies")):
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if f.name != "TEMPLATE.py":
                out[".".join([prefix, *parts])] = f
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``path`` imports at module level (also under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def test_folders_by_stage() -> None:
    for stage, modules in STAGES.items():
        for m in modules:
            assert (ROOT / "clbench" / stage / f"{m}.py").is_file(), f"clbench/{stage}/{m}.py"
    flat = sorted(p.stem for p in (ROOT / "clbench").glob("*.py"))
    assert flat == ["__init__", "__main__", "atomic", "cache", "checkpoints", "cli", "errors", "names", "registry",
                    "results", "strategy_api", "streams", "validation", "version"]


def test_every_package_is_installed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "clbench").rglob("__init__.py")}
    assert listed == found | {"clbench.strategies"}


def test_the_import_graph_has_no_circle() -> None:
    files = module_files()
    graph = {m: imports_of(m, f, set(files)) for m, f in files.items()}
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = dfs(m)
            assert cycle is None, " -> ".join(cycle)
