"""WordNet reader: data.noun / index.noun / lexnames in the wndb format, and its errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from clbench.data.wordnet import LEXNAMES, load_wordnet_nouns
from clbench.errors import DataError
from tests.data.text_formats import Synset, write_wordnet

SYNSETS = [
    Synset(3, ("entity",), "that which is perceived or known or inferred to exist"),
    Synset(5, ("dog", "domestic dog", "Canis familiaris"), 'a member of the genus Canis; "the dog barked"'),
    Synset(18, ("dog", "frump"), "a dull unattractive unpleasant girl or woman"),
    Synset(13, ("hotdog", "frank"), "a smooth-textured sausage"),
]


def test_round_trip(tmp_path: Path) -> None:
    offsets = write_wordnet(tmp_path / "wordnet", SYNSETS)
    raw = (tmp_path / "wordnet" / "data.noun").read_bytes()
    assert all(raw[o:o + 8] == f"{o:08d}".encode() for o in offsets)   # offset = byte position
    wn = load_wordnet_nouns(data_root=tmp_path)
    assert sorted(wn.synsets) == offsets
    dog = wn.synsets[offsets[1]]
    assert dog.lemmas == ("dog", "domestic dog", "Canis familiaris")
    assert dog.lexname == "noun.animal" and LEXNAMES[5] == "noun.animal"
    assert dog.gloss == 'a member of the genus Canis; "the dog barked"'
    assert dog.definition == "a member of the genus Canis"
    assert [wn.synsets[o].lexname for o in wn.senses["dog"].offsets] == ["noun.animal", "noun.person"]
    assert wn.senses["canis familiaris"].offsets == (offsets[1],)       # lower case, spaces
    assert wn.senses["dog"].tagged == 2


def test_lexnames_file_is_used_when_present(tmp_path: Path) -> None:
    names = list(LEXNAMES)
    names[5] = "noun.beast"
    write_wordnet(tmp_path / "wordnet", SYNSETS,
                  lexnames="".join(f"{i:02d}\t{n}\t1\n" for i, n in enumerate(names)))
    wn = load_wordnet_nouns(data_root=tmp_path)
    assert {s.lexname for s in wn.synsets.values()} == {"noun.Tops", "noun.beast", "noun.person", "noun.food"}
    plain = tmp_path / "plain"
    write_wordnet(plain / "wordnet", SYNSETS)
    assert load_wordnet_nouns(data_root=plain).fingerprint != wn.fingerprint


def test_missing_file_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_wordnet_nouns(data_root=tmp_path)
    assert "\n" not in str(e.value)
    assert "no data.noun in" in str(e.value) and "apt-get install wordnet-base" in str(e.value)


@pytest.mark.parametrize("damage, words", [
    ("data", "not a WordNet noun synset line"),
    ("index", "not a WordNet noun index line"),
    ("dangling", "is not in"),
    ("lexnames", "not a lexnames line"),
])
def test_malformed_files(tmp_path: Path, damage: str, words: str) -> None:
    folder = tmp_path / "wordnet"
    write_wordnet(folder, SYNSETS)
    data, index = folder / "data.noun", folder / "index.noun"
    if damage == "data":
        data.write_text(data.read_text() + "00099999 05 n 03 dog 0 | too few words\n")
    elif damage == "index":
        index.write_text(index.read_text() + "cat n 2 0 1 1 00000001\n")   # 2 synsets, 1 offset
    elif damage == "dangling":
        index.write_text(index.read_text() + "cat n 1 0 1 1 00000001  \n")
    else:
        (folder / "lexnames").write_text("00 adj.all\n05\n")
    with pytest.raises(DataError, match=words) as e:
        load_wordnet_nouns(data_root=tmp_path)
    assert "\n" not in str(e.value)
