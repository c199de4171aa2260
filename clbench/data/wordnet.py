"""WordNet 3.0 nouns: synsets (lemmas, lexicographer category, gloss) and each lemma's senses.

    >>> from clbench.data.wordnet import load_wordnet_nouns
    >>> wn = load_wordnet_nouns()                 # /usr/share/wordnet/ (wordnet-base)
    >>> dog = wn.synsets[wn.senses["dog"].offsets[0]]
    >>> dog.lemmas[:2], dog.lexname, dog.definition
    (('dog', 'domestic dog'), 'noun.animal', 'a member of the genus Canis (probably descended from the common wolf) that has been domesticated by man since prehistoric times; occurs in many breeds')
    >>> wn.senses["dog"].tagged                   # senses of "dog" seen in the tagged corpus
    1

Formats (wndb(5WN), lexnames(5WN)); fields are separated by one space:

    data.noun   a license header (lines starting with two spaces), then one line per synset:
                  synset_offset lex_filenum ss_type w_cnt [word lex_id]... p_cnt
                  [pointer_symbol synset_offset pos source/target]... | gloss
                synset_offset: 8 digits, the line's byte offset in the file; lex_filenum:
                2 digits (see lexnames); ss_type: "n"; w_cnt: 2 hex digits; word: the lemma,
                spaces as "_"; lex_id: 1 hex digit; p_cnt: 3 digits, then p_cnt pointers of 4
                fields each; gloss: the definition, then "; "-separated quoted examples.
    index.noun  the same header, then one line per lemma (lower case, "_" for spaces):
                  lemma pos synset_cnt p_cnt [ptr_symbol]... sense_cnt tagsense_cnt
                  [synset_offset]...
                the synset_cnt offsets are ordered by frequency in the semantic concordances;
                the first tagsense_cnt of them were seen there at least once.
    lexnames    "NN<TAB>name<TAB>syntactic category" per lexicographer file. Debian's
                wordnet-base does not install it, so :data:`LEXNAMES` (the table of
                lexnames(5WN)) is used when the file is absent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clbench.data.base import sha256_of
from clbench.data.debian import WORDNET, candidates, find_file, read_bytes
from clbench.errors import DataError

LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
"""Lexicographer file names by number (WordNet 3.0, lexnames(5WN)): ``LEXNAMES[5]`` is
``noun.animal``."""


@dataclass(frozen=True)
class NounSynset:
    """One line of ``data.noun``. ``lemmas`` with spaces for ``_``, in the file's order
    (the first is the lexicographer's headword); ``gloss`` whole, ``definition`` its part
    before the first ``; "`` example."""

    offset: int
    lexname: str
    lemmas: tuple[str, ...]
    gloss: str

    @property
    def definition(self) -> str:
        return self.gloss.split('; "', 1)[0].strip()


@dataclass(frozen=True)
class NounSenses:
    """One line of ``index.noun``: a lemma's synset offsets, most frequent first; the first
    ``tagged`` were seen in the tagged corpus (``tagged == 0``: a rare word)."""

    offsets: tuple[int, ...]
    tagged: int


@dataclass(frozen=True)
class WordNetNouns:
    """``synsets[offset]`` and ``senses[lemma]`` (lemma lower case, spaces for ``_``).

    ``fingerprint``: sha256 of the raw ``data.noun``, ``index.noun`` (and ``lexnames`` when
    read) bytes."""

    synsets: dict[int, NounSynset]
    senses: dict[str, NounSenses]
    fingerprint: str


def parse_lexnames(text: str, source: Path | str) -> tuple[str, ...]:
    """The names of a ``lexnames`` file, indexed by file number."""
    names: dict[int, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[0].isdigit():
            raise DataError(f"{source}:{i}: not a lexnames line (NN TAB name TAB category): {line!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{source}: file numbers are not 0..{len(names) - 1}; reinstall WordNet")
    return tuple(names[i] for i in range(len(names)))


def parse_data_noun(text: str, lexnames: tuple[str, ...], source: Path | str) -> dict[int, NounSynset]:
    """Synsets of a ``data.noun`` text, keyed by offset (the license header skipped)."""
    out: dict[int, NounSynset] = {}
    for i, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("  "):
            continue
        head, sep, gloss = line.partition(" | ")
        f = head.split()
        try:
            n_words = int(f[3], 16)
            words = f[4:4 + 2 * n_words:2]
            if not sep or f[2] != "n" or len(words) != n_words or not n_words:
                raise ValueError
            offset, lexname = int(f[0]), lexnames[int(f[1])]
        except (ValueError, IndexError):
            raise DataError(
                f"{source}:{i}: not a WordNet noun synset line "
                f"(offset lex_filenum n w_cnt words... | gloss): {line[:60]!r}"
            ) from None
        out[offset] = NounSynset(offset, lexname, tuple(w.replace("_", " ") for w in words),
                                 gloss.strip())
    return out


def parse_index_noun(text: str, source: Path | str) -> dict[str, NounSenses]:
    """Senses of each lemma of an ``index.noun`` text (the license header skipped)."""
    out: dict[str, NounSenses] = {}
    for i, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("  "):
            continue
        f = line.split()
        try:
            n_synsets, n_pointers = int(f[2]), int(f[3])
            tagged = int(f[5 + n_pointers])
            offsets = tuple(int(x) for x in f[6 + n_pointers:])
            if len(offsets) != n_synsets or f[1] != "n":
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(
                f"{source}:{i}: not a WordNet noun index line "
                f"(lemma n synset_cnt p_cnt ptrs... sense_cnt tagsense_cnt offsets...): {line[:60]!r}"
            ) from None
        out[f[0].replace("_", " ")] = NounSenses(offsets, tagged)
    return out


def load_wordnet_nouns(data_root: Path | str | None = None) -> WordNetNouns:
    """Read ``data.noun`` and ``index.noun`` (and ``lexnames`` if there) from the Debian
    package ``wordnet-base`` or a data root (see :mod:`clbench.data.debian`)."""
    data_path = find_file(WORDNET, "data.noun", data_root)
    index_path = find_file(WORDNET, "index.noun", data_root)
    raw_data, raw_index = read_bytes(data_path), read_bytes(index_path)
    chunks = [raw_data, raw_index]
    lexnames = LEXNAMES
    lex_path = next((f / "lexnames" for f in candidates(WORDNET, data_root)
                     if (f / "lexnames").is_file()), None)
    if lex_path is not None:
        raw_lex = read_bytes(lex_path)
        lexnames = parse_lexnames(_text(raw_lex, lex_path), lex_path)
        chunks.append(raw_lex)
    synsets = parse_data_noun(_text(raw_data, data_path), lexnames, data_path)
    senses = parse_index_noun(_text(raw_index, index_path), index_path)
    missing = next((o for s in senses.values() for o in s.offsets if o not in synsets), None)
    if missing is not None:
        raise DataError(f"{index_path}: synset {missing:08d} is not in {data_path}; "
                        f"the two files are from different WordNet versions")
    return WordNetNouns(synsets, senses, sha256_of(*chunks))


def _text(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); reinstall WordNet") from None
