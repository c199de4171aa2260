"""The run stage: config -> plan -> runner -> result, for one cell or a sweep of them.

    >>> import clbench
    >>> cfg = clbench.resolve_config("split-digits", "ewc", "mlp", seed=0)
    >>> result = clbench.run(cfg)          # the package is callable: clbench.run.runner.run

Modules, in the order data flows through them:

* :mod:`~clbench.run.config`: a run's config from registry defaults and ``--set`` overrides;
* :mod:`~clbench.run.plan`: every cell of a sweep resolved, with the path of its result;
* :mod:`~clbench.run.runner`: one run through a stock Avalanche template, with
  :mod:`~clbench.run.bridge` and :mod:`~clbench.run.fastdata` (the in-memory data path),
  :mod:`~clbench.run.plugins` (accuracy matrix, divergence guard), :mod:`~clbench.run.cost`
  (state bytes, peak RSS), :mod:`~clbench.run.mono` (the monosemanticity block) and
  :mod:`~clbench.run.provenance`;
* :mod:`~clbench.run.sweep` and :mod:`~clbench.run.executors`: many cells, in turn, in
  processes or on Ray, each result written once by the calling process.

``clbench.run`` is both this package and the function that runs one config: the package's
module class is given a ``__call__`` (Python allows assigning a module's ``__class__``), so
``clbench.run(cfg)`` keeps working beside ``clbench.run.sweep`` and ``clbench.run.config``.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from clbench.results import RunResult
from clbench.run.runner import run as _run_one


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> RunResult:
        return _run_one(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
