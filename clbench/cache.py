"""Where clbench keeps what it computes once and reuses: ``$CLBENCH_CACHE``, else
``~/.cache/clbench`` (dequantised LM weights in ``lm/``, fitted SAEs in ``sae/``, frozen-prefix
states in ``prefix/``). Every entry is keyed by what it depends on, so a stale one is never read.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CLBENCH_CACHE`` if set, else ``~/.cache/clbench``."""
    return Path(os.environ.get("CLBENCH_CACHE") or Path.home() / ".cache" / "clbench")
