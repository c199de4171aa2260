"""dictd reader: base-64 offsets, dictzip, FreeDict entry parsing, and its errors."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from clbench.data.dictd import (
    b64_number,
    first_translation,
    headword_of,
    load_freedict,
    main_definition,
    n_senses,
    read_dictd,
)
from clbench.errors import DataError
from tests.data.text_formats import b64, dictzip, write_dictd

ENTRIES = [
    ("ass", "ass /əs/\nâne, baudet\n"),
    ("make up", "make up /meikʌp/\n1. maquiller\n2. fard, maquillage\n"),
    ("dog", "dog /dˈɒɡ/\nBandhaken <masc>, Bandzieher <masc>\n"),
    ("dog", 'dog /dˈɒɡ/\nHund <masc> [zool.]\n      "train a dog"  - einen Hund abrichten\n'),
    ("cat", "computed axial tomography /kəm/ (CAT /kˈat/)\nSchichtröntgen <neut>\n"),
]


def test_base64_numbers() -> None:
    digits = ("A", "B", "/", "BA", "LOB")
    assert [b64_number(s) for s in digits] == [0, 1, 63, 64, 11 * 4096 + 14 * 64 + 1]
    assert all(b64_number(b64(n)) == n for n in (0, 1, 63, 64, 4095, 4096, 10**7))


def test_round_trip_through_a_data_root(tmp_path: Path) -> None:
    write_dictd(tmp_path / "dictd", "freedict-eng-fra", ENTRIES)
    d = load_freedict("eng-fra", data_root=tmp_path)
    assert d.name == "freedict-eng-fra"
    assert "00databaseinfo" not in d.entries                       # metadata is not an entry
    assert d.entries["ass"] == ["ass /əs/\nâne, baudet\n"]
    assert d.entries["make up"] == [ENTRIES[1][1]]                  # headwords may hold spaces
    assert d.entries["dog"] == [ENTRIES[2][1], ENTRIES[3][1]]       # repeats kept, in order
    kept = load_freedict("eng-fra", data_root=tmp_path, keep=lambda h: " " not in h)
    assert sorted(kept.entries) == ["ass", "cat", "dog"]
    assert kept.fingerprint == d.fingerprint                        # raw files, not the filter


def test_dictzip_is_gzip_with_a_chunk_table(tmp_path: Path) -> None:
    data = "".join(d for _, d in ENTRIES).encode() * 3
    dz = dictzip(data, chunk=16)
    assert dz[3] & 0x04 and dz[12:14] == b"RA"                       # FEXTRA, subfield "RA"
    assert gzip.decompress(dz) == data
    write_dictd(tmp_path, "x", ENTRIES)
    other = tmp_path / "y.dict.dz"
    other.write_bytes(gzip.compress(gzip.decompress((tmp_path / "x.dict.dz").read_bytes())))
    a = read_dictd(tmp_path / "x.index", tmp_path / "x.dict.dz")
    b = read_dictd(tmp_path / "x.index", other)                    # plain gzip reads the same
    assert a.entries == b.entries and a.fingerprint != b.fingerprint


def test_freedict_entry_parsing() -> None:
    assert headword_of("make up /meikʌp/\n1. x\n") == "make up"
    assert headword_of("water /wɔː/ <v>\narroser\n") == "water"
    assert first_translation(ENTRIES[0][1]) == "âne"
    assert first_translation(ENTRIES[1][1]) == "maquiller"
    assert first_translation("bank /b/ <v>\nauf die Bank bringen [Geld] , einzahlen <v, trans>\n") \
        == "auf die Bank bringen"
    assert first_translation("lonely /l/\n") is None
    assert n_senses(ENTRIES[1][1]) == 2 and n_senses(ENTRIES[0][1]) == 1
    # eng-deu: the sense with the most examples; eng-spa: the shortest pronunciation
    assert main_definition("dog", [ENTRIES[2][1], ENTRIES[3][1]]) == ENTRIES[3][1]
    spa = ["apple /ˈapəl/\ntartademanzana\n", "apple /æpl/\nmanzana\n", "apple /æpldʒuːs/\njugo\n"]
    assert main_definition("apple", spa) == spa[1]
    assert main_definition("cat", [ENTRIES[4][1]]) is None          # an abbreviation's entry


def test_missing_file_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_freedict("eng-spa", data_root=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "freedict-eng-spa.index" in msg and str(tmp_path) in msg
    assert "apt-get install dict-freedict-eng-spa" in msg
    write_dictd(tmp_path / "dictd", "freedict-eng-spa", ENTRIES)
    (tmp_path / "dictd" / "freedict-eng-spa.dict.dz").unlink()
    wanted = r"no freedict-eng-spa\.dict\.dz in .*apt-get install dict-freedict-eng-spa"
    with pytest.raises(DataError, match=wanted):
        load_freedict("eng-spa", data_root=tmp_path)


@pytest.mark.parametrize("damage, words", [
    ("line", "not a dictd index line"),
    ("digit", "not a dictd index line"),
    ("past-end", "past the end"),
    ("gzip", "corrupt dictzip data"),
])
def test_malformed_files(tmp_path: Path, damage: str, words: str) -> None:
    write_dictd(tmp_path, "d", ENTRIES)
    index, dz = tmp_path / "d.index", tmp_path / "d.dict.dz"
    if damage == "line":
        index.write_text(index.read_text() + "orphan headword\n")
    elif damage == "digit":
        index.write_text(index.read_text().replace("ass\t", "ass\t!", 1))
    elif damage == "past-end":
        index.write_text(index.read_text() + f"zebra\t{b64(10**6)}\tB\n")
    else:
        dz.write_bytes(dz.read_bytes()[:40])
    with pytest.raises(DataError, match=words) as e:
        read_dictd(index, dz)
    assert "\n" not in str(e.value)
