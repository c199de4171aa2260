"""fortune(6) files: short quotes, one topic per file.

    >>> from clbench.data.fortunes import load_fortunes
    >>> f = load_fortunes(["food", "love"])      # /usr/share/games/fortunes/ (fortunes)
    >>> len(f.entries["food"]), f.entries["love"][0][:40]
    (198, "A career is great, but you can't run you")

Format (strfile(8)): a plain text file whose entries are separated by lines holding only
``%``; the file name is the topic. Beside each file the package installs its index
``<topic>.dat`` (binary, written by strfile, not needed here), ``<topic>.u8`` links, and the
offensive entries in a separate ``off/`` folder (package ``fortunes-off``): only the plain
files named by the caller are read. Some entries underline or embolden with overstriking
(``_`` BACKSPACE ``x``), which the reader removes; leading and trailing blank lines go.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clbench.data.base import sha256_of
from clbench.data.debian import FORTUNES, find_file, read_bytes
from clbench.errors import DataError

_SEPARATOR = re.compile(r"^%\n", re.MULTILINE)
_OVERSTRIKE = re.compile(r".\x08")


@dataclass(frozen=True)
class Fortunes:
    """``entries[topic]``: the entries of file ``topic`` in file order.

    ``fingerprint``: sha256 of the raw files, in the order of the topics asked for."""

    entries: dict[str, list[str]]
    fingerprint: str


def parse_fortunes(text: str) -> list[str]:
    """The entries of a fortune file's text: split at ``%`` lines, overstrikes removed,
    empty entries dropped.

        >>> parse_fortunes("A.\\n%\\nB,\\n  b.\\n%\\n%\\n_\\x08C\\n%\\n")
        ['A.', 'B,\\n  b.', 'C']
    """
    text = _OVERSTRIKE.sub("", text.replace("\r\n", "\n"))
    if not text.endswith("\n"):
        text += "\n"
    entries = (e.strip("\n") for e in _SEPARATOR.split(text))
    return [e.rstrip() for e in entries if e.strip()]


def read_fortune_file(path: Path) -> tuple[list[str], bytes]:
    """The entries of one fortune file and its raw bytes."""
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); "
                        f"reinstall fortunes") from None
    entries = parse_fortunes(text)
    if not entries:
        raise DataError(f"{path}: no entries (none of its '%'-separated parts holds text)")
    return entries, raw


def load_fortunes(topics: list[str] | tuple[str, ...], data_root: Path | str | None = None) -> Fortunes:
    """The files ``topics`` from the Debian package ``fortunes`` or a data root (see
    :mod:`clbench.data.debian`); a topic name is a plain file name (no ``off/``, no ``.dat``)."""
    entries: dict[str, list[str]] = {}
    raws: list[bytes] = []
    for topic in topics:
        if "/" in topic or topic.endswith((".dat", ".u8")) or topic in entries:
            raise DataError(f"fortune topic {topic!r}: give each plain topic file name once "
                            f"(not a .dat index, a .u8 link or a file under off/)")
        entries[topic], raw = read_fortune_file(find_file(FORTUNES, topic, data_root))
        raws.append(raw)
    return Fortunes(entries, sha256_of(*(t.encode() for t in topics), *raws))
