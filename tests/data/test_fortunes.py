"""fortune reader: '%'-separated entries, overstrikes, topic names, and its errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from clbench.data.fortunes import load_fortunes, parse_fortunes
from clbench.errors import DataError
from tests.data.text_formats import write_fortunes


def test_parse_entries() -> None:
    text = "First line\n\tsecond line\n%\n\n%\nA\x08A bold _\x08w_\x08o_\x08r_\x08d\n%\n  Last  \r\n"
    assert parse_fortunes(text) == ["First line\n\tsecond line", "A bold word", "  Last"]
    assert parse_fortunes("only %\n100% sure\n") == ["only %\n100% sure"]   # % inside a line


def test_load_topics_from_a_data_root(tmp_path: Path) -> None:
    folder = tmp_path / "fortunes"
    write_fortunes(folder, "food", ["Eat dessert first.", "Soup of the day:\n\tsoup."])
    write_fortunes(folder, "love", ["Love is blind."])
    (folder / "food.dat").write_bytes(b"\x00\x00\x00\x02binary strfile index")
    (folder / "off").mkdir()
    write_fortunes(folder / "off", "food", ["an offensive one"])
    f = load_fortunes(["food", "love"], data_root=tmp_path)
    assert f.entries == {"food": ["Eat dessert first.", "Soup of the day:\n\tsoup."],
                         "love": ["Love is blind."]}
    assert load_fortunes(["love", "food"], data_root=tmp_path).fingerprint != f.fingerprint
    for bad in ("food.dat", "off/food", "food.u8"):
        with pytest.raises(DataError, match="plain topic file name"):
            load_fortunes([bad], data_root=tmp_path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_fortunes(["sports"], data_root=tmp_path)
    assert "\n" not in str(e.value)
    assert "no sports in" in str(e.value) and "apt-get install fortunes" in str(e.value)
    (tmp_path / "sports").write_text("%\n\n%\n")
    with pytest.raises(DataError, match="no entries"):
        load_fortunes(["sports"], data_root=tmp_path)
    (tmp_path / "sports").write_bytes(b"caf\xe9\n%\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_fortunes(["sports"], data_root=tmp_path)
