"""clbench: a continual-learning benchmark harness with SAE-based methods and a leaderboard.

    >>> import clbench
    >>> result = clbench.run(clbench.resolve_config("split-digits", "ewc", "mlp", seed=0))
    >>> result.metric("final_accuracy")

The CLI (``clbench run``, ``clbench rank``, ``clbench ls``) only wraps this API.
"""
from __future__ import annotations

from clbench import run
from clbench.errors import ClbenchError
from clbench.models.base import MODELS
from clbench.results import RunResult
from clbench.run.config import RunConfig, resolve_config
from clbench.strategy_api import STRATEGIES, BuildContext, register_strategy
from clbench.streams import STREAMS, Stream, build_stream, register_stream
from clbench.version import __version__

register_model = MODELS.register

__all__ = [
    "MODELS", "STRATEGIES", "STREAMS", "BuildContext", "ClbenchError", "RunConfig", "RunResult",
    "Stream", "__version__", "build_stream", "register_model", "register_stream",
    "register_strategy", "resolve_config", "run",
]
