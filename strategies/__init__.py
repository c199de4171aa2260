"""Continual-learning methods registered with clbench; every module here is imported.

Built-in baselines live in :mod:`strategies.baselines`. A new method is one more file in this
folder that calls :func:`clbench.register_strategy` (see ``strategies/TEMPLATE.py``, which is
not imported: copy it to a new file and rename the method).
"""
from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_") and _m.name != "TEMPLATE":
        importlib.import_module(f"{__name__}.{_m.name}")
