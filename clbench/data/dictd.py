"""dictd dictionaries (``.index`` + ``.dict.dz``), read into headword -> definitions.

    >>> from clbench.data.dictd import load_freedict, first_translation, main_definition
    >>> d = load_freedict("eng-fra")             # /usr/share/dictd/freedict-eng-fra.*
    >>> d.entries["ass"]
    ['ass /əs/\\nâne, baudet\\n']
    >>> first_translation(d.entries["ass"][0])
    'âne'
    >>> first_translation(main_definition("dog", load_freedict("eng-deu").entries["dog"]))
    'Hund'

Format (dictd(8), dictfmt(1)):

    NAME.index    one line per entry, sorted by headword:  headword TAB offset TAB length
                  offset, length: byte position and size in the *uncompressed* .dict, written
                  as base-64 numbers, most significant digit first, digits A-Z a-z 0-9 + /
                  (so "B" = 1, "BA" = 64). A headword may hold spaces and may repeat (one entry
                  per sense); headwords "00database..." / "00-database-..." are metadata.
    NAME.dict.dz  the definitions, concatenated, compressed with dictzip: a gzip file whose
                  FEXTRA subfield "RA" lists the sizes of independently flushed chunks (random
                  access); any gzip reader reads it whole, which is what happens here.

A FreeDict definition is plain text: the headword line (``headword /pronunciation/``, maybe
``<v>``-style tags), then the translation line (``1. ``/``2. `` numbered when senses differ;
translations separated by ``, `` or ``; ``; each maybe tagged ``<masc>``, ``[bot.]``,
``(note)``), then indented example lines and ``Synonym:`` / ``see:`` / ``Note:`` lines.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clbench.data.base import sha256_of
from clbench.data.debian import DICTD, find_file, read_bytes
from clbench.errors import DataError

B64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(B64_DIGITS)}
_METADATA = ("00database", "00-database-")
_TAGS = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")   # <masc> [bot.] (note) {ref}
_SENSE_NUMBER = re.compile(r"^\d+\.\s*")


@dataclass(frozen=True)
class Dictionary:
    """A dictd dictionary: ``entries[headword]`` are its definitions in index order.

    ``fingerprint``: sha256 of the raw ``.index`` and ``.dict.dz`` bytes."""

    name: str
    entries: dict[str, list[str]]
    fingerprint: str


def b64_number(digits: str) -> int:
    """The value of a dictd base-64 number: ``b64_number("BA") == 64``."""
    n = 0
    for c in digits:
        n = n * 64 + _B64_VALUE[c]  # KeyError on a bad digit: the caller names the line
    return n


def parse_index(text: str, source: Path | str) -> list[tuple[str, int, int]]:
    """``(headword, offset, length)`` for each line of a ``.index`` text, metadata lines
    included; a malformed line is a :class:`DataError` naming ``source`` and the line."""
    out = []
    for i, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 3:
                raise KeyError
            out.append((parts[0], b64_number(parts[1]), b64_number(parts[2])))
        except KeyError:
            raise DataError(
                f"{source}:{i}: not a dictd index line (headword TAB offset TAB length): "
                f"{line[:60]!r}; reinstall the dictionary"
            ) from None
    return out


def read_dictd(index: Path, dict_dz: Path, keep: Callable[[str], bool] | None = None) -> Dictionary:
    """Read a dictionary; only headwords for which ``keep(headword)`` is true (all if
    ``None``; metadata entries never) are decoded and kept."""
    raw_index, raw_dict = read_bytes(index), read_bytes(dict_dz)
    try:
        text = gzip.decompress(raw_dict) if raw_dict[:2] == b"\x1f\x8b" else raw_dict
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{dict_dz}: corrupt dictzip data ({e}); reinstall the dictionary") from None
    try:
        lines = parse_index(raw_index.decode("utf-8"), index)
    except UnicodeDecodeError as e:
        raise DataError(f"{index}: not UTF-8 ({e.reason} at byte {e.start})") from None
    entries: dict[str, list[str]] = {}
    for head, offset, length in lines:
        if head.startswith(_METADATA) or (keep is not None and not keep(head)):
            continue
        if offset + length > len(text):
            raise DataError(
                f"{index}: entry {head!r} ends at byte {offset + length}, past the end of "
                f"{dict_dz.name} ({len(text)} bytes uncompressed); the pair does not match"
            )
        try:
            entries.setdefault(head, []).append(text[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{dict_dz}: entry {head!r} is not UTF-8; reinstall it") from None
    stem = index.name.removesuffix(".index")
    return Dictionary(stem, entries, sha256_of(raw_index, raw_dict))


def load_freedict(pair: str, data_root: Path | str | None = None,
                  keep: Callable[[str], bool] | None = None) -> Dictionary:
    """The FreeDict dictionary ``pair`` (``"eng-fra"``), from the Debian package
    ``dict-freedict-<pair>`` or a data root (see :mod:`clbench.data.debian`)."""
    name = f"freedict-{pair}"
    index = find_file(DICTD, f"{name}.index", data_root, name)
    dict_dz = find_file(DICTD, f"{name}.dict.dz", data_root, name)
    return read_dictd(index, dict_dz, keep)


def headword_of(definition: str) -> str:
    """The headword as a definition's first line spells it (before ``/pron/`` or ``<tag>``)."""
    first = definition.split("\n", 1)[0]
    return re.split(r"\s+[/<(]", first, maxsplit=1)[0].strip()


def first_translation(definition: str) -> str | None:
    """The first translation of a FreeDict definition: the first item of its translation line
    (the second line), the sense number and ``<..>`` ``[..]`` ``(..)`` ``{..}`` tags removed;
    ``None`` when that line is empty.

        >>> first_translation("make up /meikʌp/\\n1. maquiller\\n2. fard, maquillage\\n")
        'maquiller'
        >>> first_translation("car /kˈɑː/\\n [Am.] Waggon <masc>, Wagen <masc>\\n")
        'Waggon'
    """
    lines = definition.split("\n")
    if len(lines) < 2:
        return None
    line = _SENSE_NUMBER.sub("", _TAGS.sub(" ", lines[1]).strip())
    first = re.split(r"[,;]", line, maxsplit=1)[0]
    return " ".join(first.split()) or None


def n_senses(definition: str) -> int:
    """How many numbered senses (``1. ``, ``2. `` lines) a definition lists; 1 if unnumbered."""
    return max(1, len(re.findall(r"(?m)^\d+\. ", definition)))


def main_definition(headword: str, definitions: list[str]) -> str | None:
    """The definition of ``headword``'s main sense, or ``None`` when no definition's first
    line spells exactly ``headword`` (the entry of an abbreviation such as ``CAT`` under
    ``cat``, of ``ABC`` under ``abc``, of ``about‐face`` under ``aboutface`` is not its own).

    Of its own definitions: the one with the shortest pronunciation (FreeDict eng-spa files
    compounds under their first word: ``apple /æpldʒuːs/`` is "apple juice"), then the most
    example lines (eng-deu keeps one entry per sense, sorted by the German word, and the main
    sense carries the most examples: ``dog`` is Hund, not Bandhaken), then index order."""
    own = [d for d in definitions if headword_of(d) == headword]
    if not own:
        return None
    return min(own, key=lambda d: (len(_pronunciation(d)), -d.count('\n      "')))


def _pronunciation(definition: str) -> str:
    m = re.search(r"/([^/]*)/", definition.split("\n", 1)[0])
    return m.group(1) if m else "?" * 99  # no pronunciation: ranked last
