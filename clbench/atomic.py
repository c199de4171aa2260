"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> _ = write_text_atomic(out, "{}")
    >>> out.read_text(), oct(out.stat().st_mode & 0o777)
    ('{}', '0o644')

The bytes go to a temp file in the target's folder (``.<name>.<random>.tmp``, which loaders and
resume ignore), are fsynced, given the file mode (0644 by default: results, reports and figures
are meant to be read by a lab and served by a web server; ``mkstemp`` alone would leave 0600),
and the temp file is renamed over the target; on any error, even KeyboardInterrupt, the temp
file is removed. This is the one writer clbench uses for every file it produces.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

#: the mode of every file clbench writes: owner read/write, everyone read
FILE_MODE = 0o644


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object],
                 mode: int = FILE_MODE) -> Path:
    """Call ``write(f)`` on a binary temp file beside ``path``, fsync, set ``mode``, rename
    over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str, mode: int = FILE_MODE) -> Path:
    """``text`` (UTF-8) written to ``path`` atomically, with file mode ``mode``."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), mode)
