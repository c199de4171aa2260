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

A process killed between the temp file and the rename (SIGKILL, power loss) leaves the temp
file behind; the next write of the same target removes its stale temp files (older than
:data:`STALE_SECONDS`: a younger one may be another process's write in flight), and
:func:`remove_stale_temps` clears a whole tree (``clbench run`` does so for its results
folder). A write that fails (disk full, no permission, the target is a folder) is a one-line
:class:`~clbench.errors.ClbenchError` naming the file; the old file, if any, is unchanged.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

from clbench.errors import ClbenchError

#: the mode of every file clbench writes: owner read/write, everyone read
FILE_MODE = 0o644
#: a temp file older than this (seconds) belongs to no write still in flight
STALE_SECONDS = 600.0
#: ``.<target name>.<mkstemp's 8 characters>.tmp``, the temp files :func:`write_atomic` makes
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _stale(paths: list[Path], older_than: float) -> list[Path]:
    """Remove those of ``paths`` that are clbench temp files older than ``older_than`` s."""
    now, removed = time.time(), []
    for p in paths:
        try:
            if TEMP_NAME.match(p.name) and p.is_file() and now - p.stat().st_mtime > older_than:
                p.unlink()
                removed.append(p)
        except OSError:  # gone already, or not ours to remove: leave it
            pass
    return removed


def remove_stale_temps(folder: str | Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove every stale temp file of :func:`write_atomic` under ``folder``; the removed."""
    folder = Path(folder)
    return _stale(sorted(folder.rglob(".*.tmp")), older_than) if folder.is_dir() else []


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object],
                 mode: int = FILE_MODE) -> Path:
    """Call ``write(f)`` on a binary temp file beside ``path``, fsync, set ``mode``, rename
    over ``path``; returns ``path``."""
    path = Path(path)
    if path.is_dir():
        raise ClbenchError(f"{path} is a folder; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _stale(list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")), STALE_SECONDS)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ClbenchError(f"{path}: cannot write it ({e.strerror or e}); check the folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, permissions: the old file stands
        Path(tmp).unlink(missing_ok=True)
        raise ClbenchError(f"{path}: cannot write it ({e.strerror or e}); it is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str, mode: int = FILE_MODE) -> Path:
    """``text`` (UTF-8) written to ``path`` atomically, with file mode ``mode``."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), mode)
