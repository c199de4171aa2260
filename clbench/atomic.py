"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

    >>> write_atomic("out/result.json", lambda f: f.write(b"{}"))

The bytes go to a temp file in the target's folder (``.<name>.<random>.tmp``, which loaders and
resume ignore), are fsynced, and the temp file is renamed over the target; on any error, even
KeyboardInterrupt, the temp file is removed.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a binary temp file beside ``path``, fsync, rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) written to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))
