"""How methods reach the registry: built-ins as ``clbench.strategies``, others by entry point.

The entry-point tests install a throwaway distribution the way pip lays one out (a module and a
``*.dist-info`` folder with ``entry_points.txt``) into a folder put on ``PYTHONPATH`` of a fresh
``clbench`` process, so ``importlib.metadata`` finds it exactly as it finds an installed package.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import clbench.strategies
from clbench.strategy_api import ENTRY_POINT_GROUP, STRATEGIES

BUILT_IN = ["naive", "ewc", "replay", "sae-reg", "sae-ception"]

METHOD = '''
from avalanche.training.plugins import EWCPlugin
from clbench import register_strategy


@register_strategy("ext-ewc", defaults={"ewc_lambda": 10.0},
                   description="EWC registered by another package through an entry point")
def build(p, ctx):
    return EWCPlugin(ewc_lambda=p["ewc_lambda"])
'''


def install_dist(site: Path, dist: str, entry_points: dict[str, str],
                 modules: dict[str, str]) -> None:
    """Lay out an installed distribution: its modules and ``<dist>-0.1.dist-info``."""
    site.mkdir(parents=True, exist_ok=True)
    for name, code in modules.items():
        (site / f"{name}.py").write_text(code)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def clbench_cli(args: list[str], cwd: Path, pythonpath: Path | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "clbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_built_in_methods_live_in_clbench_strategies() -> None:
    assert Path(clbench.strategies.__file__).parent.name == "strategies"
    for name in BUILT_IN:
        assert STRATEGIES.get(name).obj.build.__module__.startswith("clbench.strategies.")


def test_entry_points_register_methods_and_nothing_shadows_them(tmp_path: Path) -> None:
    """One ``clbench ls strategies`` process (each costs a torch import) checks three things:
    a method of another distribution appears by install alone; a broken entry point is skipped
    with a warning naming it; and a user's own ``./strategies`` folder, which ``python -m`` puts
    first on ``sys.path``, no longer replaces the built-in methods (before, ``import
    strategies`` found it)."""
    site = tmp_path / "site"
    install_dist(site, "clbench-ext", {"ext-ewc": "clbench_ext_method"},
                 {"clbench_ext_method": METHOD})
    install_dist(site, "clbench-broken", {"broken": "clbench_broken_method"},
                 {"clbench_broken_method": "raise RuntimeError('this package is broken')\n"})
    own = tmp_path / "strategies"
    own.mkdir()
    (own / "__init__.py").write_text("raise RuntimeError('the user folder was imported')\n")
    out = clbench_cli(["ls", "strategies"], tmp_path, site)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert "ext-ewc" in listed and set(BUILT_IN) <= listed
    assert "entry point 'broken'" in out.stderr and "clbench-broken" in out.stderr
    assert "this package is broken" in out.stderr and "user folder" not in out.stderr


def test_a_method_from_an_entry_point_runs_like_a_built_in(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_dist(site, "clbench-ext", {"ext-ewc": "clbench_ext_method"},
                 {"clbench_ext_method": METHOD})
    run = clbench_cli(["run", "--stream", "split-digits", "--strategy", "ext-ewc", "--seeds", "0",
                       "--set", "epochs=1", "--set", "ext-ewc.ewc_lambda=5", "--set",
                       "mono.when=off", "--quiet", "--threads", "1",
                       "--results", str(tmp_path / "results")], tmp_path, site)
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "results/split-digits/mlp").glob("ext-ewc*/seed0.json"))
    assert "ext-ewc" in run.stdout
