"""Names that become file or folder names: suites, strategies, labels, leaderboards.

    >>> check_name("strategy", "replay+ewc")
    'replay+ewc'
    >>> check_name("suite", "../../x")
    Traceback (most recent call last):
    clbench.errors.ClbenchError: suite name '../../x' may not contain '/'; use letters, digits and - _ . + @

A name is used as one path component (``results/<stream>/<model>/<strategy>/``,
``leaderboard/<name>.csv``), so it must stay one: non-empty, no ``/`` or ``\\``, not ``.`` or
``..`` nor starting with ``.`` (a hidden file, or a way up), and no control characters (which
also break one-line messages and tables). Anything else (``$``, spaces, unicode) is allowed and
shown as plain text.
"""
from __future__ import annotations

import unicodedata

from clbench.errors import ClbenchError

_FIX = "use letters, digits and - _ . + @"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component, or None if it can."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    for bad in ("/", "\\"):
        if bad in name:
            return f"may not contain {bad!r}"
    if name.startswith("."):
        return "may not start with '.'"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "may not contain control characters"
    return None


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a safe single path component, else a ClbenchError naming ``kind``."""
    why = name_problem(name)
    if why is not None:
        raise ClbenchError(f"{kind} name {name!r} {why}; {_FIX}")
    return str(name)
