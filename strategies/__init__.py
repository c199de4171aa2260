"""Continual-learning methods registered with clbench; every module here is imported.

This folder installs as ``clbench.strategies`` (``pyproject.toml`` maps it), so a folder named
``strategies`` in a user's working directory never replaces it. The strategy registry imports
it on its first lookup (:func:`clbench.strategy_api.load_methods`).

Built-in baselines live in :mod:`clbench.strategies.baselines`. A new method is one more file in
this folder that calls :func:`clbench.register_strategy` (see ``strategies/TEMPLATE.py``, which
is not imported: copy it to a new file and rename the method), or a module of another package
declared as a ``clbench.strategies`` entry point.
"""
from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_") and _m.name != "TEMPLATE":
        importlib.import_module(f"{__name__}.{_m.name}")
