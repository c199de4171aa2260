"""General English prose: the King James Bible of the Debian package ``bible-kjv-text``.

    >>> from clbench.data.prose import load_kjv
    >>> kjv = load_kjv()                          # /usr/lib/bible.data
    >>> len(kjv.verses), kjv.verses[0]
    (31102, Verse(book='Ge', chapter=1, verse=1, text='In the beginning God created the heaven and the earth.'))
    >>> kjv.passages(3)[0][:60]
    'In the beginning God created the heaven and the earth. And t'

Format of ``bible.data`` (bible-kjv's text storage library, tsl.h; integers big-endian):

    bytes 0-1    magic "EC";  2-3 file version "02";  4-83 description, NUL-padded
                 ("Compressed Data File")
    84-87        window size W (65536);  88-91 number of windows N
    92-          N+1 window starts (byte offsets in this file; the last is the file size)
    then         the 3 bytes 1f 9d 90 (compress(1) magic: 16-bit codes, block mode) and the
                 windows: window i, the bytes [start_i, start_i+1), is an independent LZW
                 stream of compress(1) (codes of 9..16 bits, least significant bit first,
                 read in groups of n_bits bytes, code 256 = CLEAR) that expands to the i-th
                 W bytes of the text (the last window to the rest).

The text is ASCII: a title line, then one verse per line, ``<book><chapter>:<verse> <text>``
(``Ge1:1 In the beginning ...``; book abbreviations as the package spells them, ``1Sm``,
``SSol``, ``Rev``). ``bible.data.conc`` (the concordance) is not read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clbench.data.base import sha256_of
from clbench.data.debian import BIBLE, find_file, read_bytes
from clbench.errors import DataError

TSL_MAGIC = b"EC02"
COMPRESS_MAGIC = b"\x1f\x9d"
_HEADER = 92                     # magic, version, description (80), window size, window count
_VERSE = re.compile(r"([1-3]?[A-Z][A-Za-z]*)(\d+):(\d+) (.+)")


@dataclass(frozen=True)
class Verse:
    book: str
    chapter: int
    verse: int
    text: str


@dataclass(frozen=True)
class Bible:
    """The verses in canonical order; ``fingerprint``: sha256 of the raw ``bible.data``."""

    verses: list[Verse]
    fingerprint: str

    def passages(self, verses_per_passage: int) -> list[str]:
        """The text cut into passages of ``verses_per_passage`` consecutive verses of one
        chapter (a chapter's last passage may be shorter), verses joined by a space."""
        out: list[str] = []
        group: list[Verse] = []
        for v in self.verses + [Verse("", 0, 0, "")]:   # the sentinel flushes the last group
            if group and (len(group) == verses_per_passage
                          or (v.book, v.chapter) != (group[0].book, group[0].chapter)):
                out.append(" ".join(g.text for g in group))
                group = []
            group.append(v)
        return out


def unlzw(data: bytes, maxbits: int = 16) -> bytes:
    """Expand one compress(1) LZW stream (no 3-byte header), block mode.

    Codes start 9 bits wide and grow by one bit when the next dictionary entry would not
    fit, up to ``maxbits``; the coder writes codes in groups of n_bits bytes (8 codes) and
    starts a new group whenever the width changes or after CLEAR (code 256), so the reader
    drops the rest of the current group then."""
    maxmax = 1 << maxbits
    table = [bytes([i]) for i in range(256)] + [b""]     # 256: CLEAR, never an entry
    out: list[bytes] = []
    n_bits, maxcode, free_ent = 9, 511, 257
    pos = offset = size = group = 0
    clear = False
    prev = b""
    while True:
        if clear or offset >= size or free_ent > maxcode:
            if free_ent > maxcode:
                n_bits += 1
                maxcode = maxmax if n_bits == maxbits else (1 << n_bits) - 1
            if clear:
                n_bits, maxcode, clear = 9, 511, False
            chunk = data[pos:pos + n_bits]
            pos += len(chunk)
            size = len(chunk) * 8 - (n_bits - 1)         # bits holding whole codes
            if size <= 0:
                return b"".join(out)
            group, offset = int.from_bytes(chunk, "little"), 0
        code = (group >> offset) & ((1 << n_bits) - 1)
        offset += n_bits
        if not prev:                                     # first code (or first after CLEAR)
            if code > 255:
                raise ValueError(f"first code {code} is not a literal")
            prev = table[code]
            out.append(prev)
            continue
        if code == 256:
            del table[257:]
            free_ent, clear, prev = 257, True, b""
            continue
        if code < len(table):
            entry = table[code]
        elif code == len(table):                         # the KwKwK case
            entry = prev + prev[:1]
        else:
            raise ValueError(f"code {code} beyond the {len(table)} entries defined")
        out.append(entry)
        if free_ent < maxmax:
            table.append(prev + entry[:1])
            free_ent += 1
        prev = entry


def read_bible_data(path: Path) -> tuple[str, bytes]:
    """The text stored in a bible-kjv ``bible.data`` file, and the file's raw bytes."""
    raw = read_bytes(path)
    fix = "reinstall bible-kjv-text"
    if len(raw) < _HEADER or raw[:4] != TSL_MAGIC:
        raise DataError(f"{path}: not a bible-kjv text file (magic {raw[:4]!r}, expected "
                        f"{TSL_MAGIC!r}); {fix}")
    wsize, wnum = int.from_bytes(raw[84:88], "big"), int.from_bytes(raw[88:92], "big")
    table_end = _HEADER + 4 * (wnum + 1)
    starts = [int.from_bytes(raw[i:i + 4], "big") for i in range(_HEADER, table_end, 4)]
    if (len(raw) < table_end + 3 or raw[table_end:table_end + 2] != COMPRESS_MAGIC
            or starts != sorted(starts) or starts[0] < table_end or starts[-1] != len(raw)):
        raise DataError(f"{path}: broken window table ({wnum} windows of {wsize} bytes, "
                        f"file of {len(raw)} bytes); {fix}")
    maxbits = raw[table_end + 2] & 0x1F
    windows = []
    for i in range(wnum):
        try:
            w = unlzw(raw[starts[i]:starts[i + 1]], maxbits)
        except ValueError as e:
            raise DataError(f"{path}: window {i} is corrupt ({e}); {fix}") from None
        if len(w) != wsize and i != wnum - 1:
            raise DataError(f"{path}: window {i} expands to {len(w)} bytes, not {wsize}; {fix}")
        windows.append(w)
    try:
        return b"".join(windows).decode("ascii"), raw
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: non-ASCII byte at text offset {e.start}; {fix}") from None


def parse_verses(text: str, source: Path | str) -> list[Verse]:
    """The verses of the text (its first line, the title, skipped)."""
    verses = []
    for i, line in enumerate(text.split("\n")[1:], 2):
        if not line:
            continue
        m = _VERSE.fullmatch(line)
        if m is None:
            raise DataError(f"{source}: text line {i} is not '<book><chapter>:<verse> <text>': "
                            f"{line[:60]!r}")
        verses.append(Verse(m[1], int(m[2]), int(m[3]), m[4].strip()))
    if not verses:
        raise DataError(f"{source}: no verses; reinstall bible-kjv-text")
    return verses


def load_kjv(data_root: Path | str | None = None) -> Bible:
    """The KJV verses from the Debian package ``bible-kjv-text`` or a data root (see
    :mod:`clbench.data.debian`)."""
    path = find_file(BIBLE, "bible.data", data_root)
    text, raw = read_bible_data(path)
    return Bible(parse_verses(text, path), sha256_of(raw))
