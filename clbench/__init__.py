"""clbench: a continual-learning benchmark harness with SAE-based methods and a leaderboard.

    >>> import clbench
    >>> result = clbench.run(clbench.resolve_config("split-digits", "ewc", "mlp", seed=0))
    >>> result.metric("final_accuracy")

The CLI (``clbench run``, ``clbench rank``, ``clbench ls``) only wraps this API;
``clbench.results_frame("results")`` gives a results folder as a tidy pandas DataFrame.

The public names are imported on first use (PEP 562 ``__getattr__``): ``import clbench`` and
``clbench --help`` load neither torch nor Avalanche, which take seconds; ``clbench.run`` and the
registries load them when touched.
"""
from __future__ import annotations

import importlib
from typing import Any

from clbench.version import __version__

#: public name -> (module, attribute in it; None: the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "run": ("clbench.run", None),
    "ClbenchError": ("clbench.errors", "ClbenchError"),
    "MODELS": ("clbench.models.base", "MODELS"),
    "RunResult": ("clbench.results", "RunResult"),
    "results_frame": ("clbench.board.frame", "results_frame"),
    "RunConfig": ("clbench.run.config", "RunConfig"),
    "resolve_config": ("clbench.run.config", "resolve_config"),
    "STRATEGIES": ("clbench.strategy_api", "STRATEGIES"),
    "BuildContext": ("clbench.strategy_api", "BuildContext"),
    "register_strategy": ("clbench.strategy_api", "register_strategy"),
    "STREAMS": ("clbench.streams", "STREAMS"),
    "Stream": ("clbench.streams", "Stream"),
    "build_stream": ("clbench.streams", "build_stream"),
    "register_stream": ("clbench.streams", "register_stream"),
}

__all__ = sorted([*_LAZY, "__version__", "register_model"])


def __getattr__(name: str) -> Any:
    if name == "register_model":
        return __getattr__("MODELS").register
    if name not in _LAZY:
        raise AttributeError(f"module 'clbench' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
