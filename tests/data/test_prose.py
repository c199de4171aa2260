"""bible-kjv reader: compress(1) LZW windows, the tsl header, verse lines, and its errors."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clbench.data.prose import load_kjv, read_bible_data, unlzw
from clbench.errors import DataError
from tests.data.text_formats import KJV_TEXT, KJV_VERSES, bible_data, lzw_compress

# bytes that grow the code width past 9..12 bits, repeat (long matches) and hold every byte value
SAMPLE = (np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes() * 2
          + b"TOBEORNOTTOBEORTOBEORNOT" * 300 + bytes(range(256)) * 20)


@pytest.mark.parametrize("maxbits, clear", [(16, False), (12, False), (10, True), (12, True)])
def test_lzw_round_trip(maxbits: int, clear: bool) -> None:
    z = lzw_compress(SAMPLE, maxbits, clear_when_full=clear)
    assert unlzw(z, maxbits) == SAMPLE
    assert unlzw(b"") == b""


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip binary to cross-check .Z streams")
@pytest.mark.parametrize("maxbits, clear", [(16, False), (10, True)])
def test_the_writer_is_compress_format(maxbits: int, clear: bool) -> None:
    """gzip -d reads compress(1) .Z files: an independent check that the test files are real."""
    z = b"\x1f\x9d" + bytes([0x80 | maxbits]) + lzw_compress(SAMPLE, maxbits, clear_when_full=clear)
    out = subprocess.run(["gzip", "-dc"], input=z, capture_output=True, check=True)
    assert out.stdout == SAMPLE


def test_load_kjv_from_a_data_root(tmp_path: Path) -> None:
    (tmp_path / "bible-kjv").mkdir()
    (tmp_path / "bible-kjv" / "bible.data").write_bytes(bible_data(KJV_TEXT, window=128))
    assert len(KJV_TEXT) > 5 * 128                                  # several windows
    kjv = load_kjv(data_root=tmp_path)
    got = [(v.book, v.chapter, v.verse, v.text) for v in kjv.verses]
    assert got == KJV_VERSES
    assert kjv.passages(3)[0] == " ".join(t for *_, t in KJV_VERSES[:3])
    # Ge1 holds 4 verses (3 + 1); every other chapter here one: passages never span chapters
    bounds = ((0, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9))
    assert kjv.passages(3) == [" ".join(t for *_, t in KJV_VERSES[i:j]) for i, j in bounds]
    (tmp_path / "bible.data").write_bytes(b"not read: DIR/bible-kjv/ comes first")
    assert load_kjv(data_root=tmp_path).fingerprint == kjv.fingerprint
    flat = tmp_path / "flat"                                          # DIR/bible.data also works
    flat.mkdir()
    (flat / "bible.data").write_bytes(bible_data(KJV_TEXT, window=4096))
    assert load_kjv(data_root=flat).fingerprint != kjv.fingerprint  # another file, same text
    text, _ = read_bible_data(flat / "bible.data")
    assert text == KJV_TEXT


def test_missing_file_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_kjv(data_root=tmp_path)
    assert "\n" not in str(e.value)
    assert "no bible.data in" in str(e.value) and "apt-get install bible-kjv-text" in str(e.value)


def _damaged(kind: str) -> bytes:
    good = bible_data(KJV_TEXT, window=128)
    n = int.from_bytes(good[88:92], "big")
    first = int.from_bytes(good[92:96], "big")
    if kind == "magic":
        return b"XX" + good[2:]
    if kind == "table":
        return good[:-1]                                            # last start != file size
    if kind == "window":
        return good[:first] + bytes([good[first] ^ 0xFF, 0xFF, 0xFF]) + good[first + 3:]
    if kind == "size":   # the first window table entry skips half of window 0
        second = int.from_bytes(good[96:100], "big")
        return good[:92] + ((first + second) // 2).to_bytes(4, "big") + good[96:]
    if kind == "verse":
        return bible_data(KJV_TEXT + "not a verse line\n", window=128)
    raise AssertionError(kind, n)


@pytest.mark.parametrize("kind, words", [
    ("magic", "not a bible-kjv text file"),
    ("table", "broken window table"),
    ("window", "window 0"),
    ("size", "window 0"),
    ("verse", "is not '<book><chapter>:<verse> <text>'"),
])
def test_malformed_files(tmp_path: Path, kind: str, words: str) -> None:
    (tmp_path / "bible.data").write_bytes(_damaged(kind))
    with pytest.raises(DataError, match=words) as e:
        load_kjv(data_root=tmp_path)
    assert "\n" not in str(e.value)
