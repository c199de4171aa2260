"""Per-cell lock files: two ``clbench run`` on one results folder run each cell once.

    >>> import tempfile, pathlib
    >>> result = pathlib.Path(tempfile.mkdtemp()) / "seed0.json"
    >>> lock = CellLock.acquire(result)
    >>> lock is not None, CellLock.acquire(result) is None    # held: a second claim fails
    (True, True)
    >>> lock.release(); CellLock.acquire(result) is not None
    True

A sweep claims a cell before running it by creating ``.<result name>.lock`` beside the result
(``O_CREAT | O_EXCL``: of two processes exactly one succeeds) holding the owner's pid, host and
start time as JSON, and removes it once the result is written. Another sweep that finds the
lock leaves the cell to its owner. A lock is stale, and taken over, when its owner is gone:

* same host, and no process has its pid (``kill(pid, 0)`` fails with ESRCH);
* or the file is empty or unreadable (the owner died between creating and filling it) and
  older than :data:`UNREADABLE_STALE_SECONDS`.

A lock from another host is never taken over (its pid means nothing here): remove the file
when that host's run is known to be gone. Taking over renames the stale file to a name of our
own first, so of two processes taking over the same lock only one wins. A lock that cannot be
made (a full disk, no permission) is a one-line :class:`~clbench.errors.ClbenchError` naming
it, and leaves no lock file behind.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError

#: an empty or unreadable lock file older than this (seconds) belongs to a dead process
UNREADABLE_STALE_SECONDS = 60.0


def lock_path(result: Path) -> Path:
    """``.<result name>.lock`` beside ``result`` (hidden: loaders glob ``seed*.json``)."""
    return result.parent / f".{result.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by someone else
        return True
    return True


def read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's ``{"pid", "host", "started"}``, or None if it cannot be read."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def is_stale(path: Path) -> bool:
    """Whether the lock at ``path`` belongs to no live process (see the module docstring)."""
    owner = read_owner(path)
    if owner is None:
        try:
            return time.time() - path.stat().st_mtime > UNREADABLE_STALE_SECONDS
        except FileNotFoundError:
            return False
    return owner.get("host") == socket.gethostname() and not _alive(owner["pid"])


def holder(result: Path) -> str:
    """Who holds ``result``'s lock, in words (for a message)."""
    owner = read_owner(lock_path(result))
    return "an unknown process" if owner is None else f"pid {owner['pid']} on {owner.get('host')}"


def _unwritable(path: Path, e: OSError) -> ClbenchError:
    """The one-line error for a lock file ``path`` that could not be made."""
    return ClbenchError(f"{path}: cannot write this cell's lock file ({e.strerror or e}); "
                        "check the folder")


@dataclass
class CellLock:
    """A held lock; :meth:`release` removes it, and the folders :meth:`acquire` made for it."""

    path: Path
    made: tuple[Path, ...] = ()   # folders the claim created, deepest first

    @classmethod
    def acquire(cls, result: Path) -> "CellLock | None":
        """Claim ``result``'s cell: the lock, or None if a live process holds it."""
        path = lock_path(result)
        missing = [f for f in (path.parent, *path.parent.parents) if not f.exists()]
        for _ in range(2):  # a second try after taking over a stale lock
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not is_stale(path):
                    return None
                grave = path.with_name(f"{path.name}.stale.{os.getpid()}")
                try:
                    os.replace(path, grave)  # one of several takers gets the stale file
                except FileNotFoundError:
                    continue
                grave.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise _unwritable(path, e) from None
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(owner, f)
            except OSError as e:  # an empty lock would hold the cell for a minute: remove it
                path.unlink(missing_ok=True)
                raise _unwritable(path, e) from None
            return cls(path, tuple(missing))
        return None

    def release(self) -> None:
        """Remove the lock if it is ours; then the folders the claim made (a new results
        folder's ``stream/model/strategy``) where they are still empty, so a cell that wrote no
        result leaves no folder behind."""
        owner = read_owner(self.path)
        if owner is not None and owner["pid"] == os.getpid():
            self.path.unlink(missing_ok=True)
            for folder in self.made:
                try:
                    folder.rmdir()   # only an empty folder goes
                except OSError:
                    break
