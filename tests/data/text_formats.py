"""Writers for the real on-disk formats of the text-v1 sources, and a tiny data root of them.

    >>> from tests.data.text_formats import write_dictd, write_text_root
    >>> write_dictd(Path("/tmp/d"), "freedict-eng-fra", [("cat", "cat /kæt/\\nchat\\n")])
    >>> write_text_root(Path("/tmp/root"))   # every file build_text_v1 reads, in DIR/<source>/

Each writer follows the format its reader documents (clbench/data/dictd.py, wordnet.py,
fortunes.py, prose.py): dictd index with base-64 offsets and a dictzip file (gzip with the
"RA" chunk table), WordNet lines whose offsets are their byte positions, ``%``-separated
fortune files, and a bible-kjv ``bible.data`` whose windows are compress(1) LZW streams.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from clbench.data.dictd import B64_DIGITS

LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def b64(n: int) -> str:
    """dictd's base-64 number: ``b64(64) == "BA"``."""
    digits = ""
    while True:
        digits = B64_DIGITS[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def dictzip(data: bytes, chunk: int = 64) -> bytes:
    """``data`` as dictzip writes it: gzip, FEXTRA subfield "RA" (version 1, chunk length,
    chunk count, compressed chunk sizes), each chunk deflated up to a full flush."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = []
    for i in range(0, len(data), chunk):
        last = i + chunk >= len(data)
        flush = zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH
        parts.append(c.compress(data[i:i + chunk]) + c.flush(flush))
    ra = struct.pack("<HHH", 1, chunk, len(parts)) + b"".join(struct.pack("<H", len(p)) for p in parts)
    extra = b"RA" + struct.pack("<H", len(ra)) + ra
    header = b"\x1f\x8b\x08\x04" + struct.pack("<I", 0) + b"\x02\x03" + struct.pack("<H", len(extra))
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + extra + b"".join(parts) + trailer


def write_dictd(folder: Path, name: str, entries: list[tuple[str, str]]) -> None:
    """``name.index`` + ``name.dict.dz`` holding ``(index headword, definition)`` entries
    (a headword may repeat), with the 00databaseinfo entry dictfmt writes."""
    folder.mkdir(parents=True, exist_ok=True)
    body, lines = b"", []
    for head, definition in [("00databaseinfo", "A tiny test dictionary.\n"), *entries]:
        raw = definition.encode()
        lines.append(f"{head}\t{b64(len(body))}\t{b64(len(raw))}")
        body += raw
    lines.sort(key=lambda line: line.split("\t")[0])
    (folder / f"{name}.index").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / f"{name}.dict.dz").write_bytes(dictzip(body))


@dataclass(frozen=True)
class Synset:
    """A synset to write: lexicographer file number, lemmas (spaces allowed), gloss."""

    lex: int
    lemmas: tuple[str, ...]
    gloss: str


def write_wordnet(folder: Path, synsets: list[Synset], lexnames: str | None = None) -> list[int]:
    """``data.noun`` and ``index.noun`` (and ``lexnames`` if given) for ``synsets``; returns
    their offsets. Each synset points at the first (hypernym ``@``), so lines carry pointers;
    a lemma's senses in index.noun follow the order of ``synsets``, all of them tagged."""
    folder.mkdir(parents=True, exist_ok=True)

    def line(s: Synset, offset: int, target: int) -> str:
        words = " ".join(f"{w.replace(' ', '_')} {i % 16:x}" for i, w in enumerate(s.lemmas))
        return (f"{offset:08d} {s.lex:02d} n {len(s.lemmas):02x} {words} 001 @ {target:08d} n 0000"
                f" | {s.gloss}  \n")

    offsets, pos = [], len(LICENSE.encode())
    for s in synsets:                        # pointer fields are fixed width: offsets first
        offsets.append(pos)
        pos += len(line(s, 0, 0).encode())
    text = LICENSE + "".join(line(s, o, offsets[0]) for s, o in zip(synsets, offsets))
    (folder / "data.noun").write_text(text, encoding="utf-8")
    senses: dict[str, list[int]] = {}
    for s, o in zip(synsets, offsets):
        for w in s.lemmas:
            senses.setdefault(w.lower().replace(" ", "_"), []).append(o)
    index = LICENSE + "".join(
        f"{lemma} n {len(offs)} 2 @ ~ {len(offs)} {len(offs)} " + " ".join(f"{o:08d}" for o in offs) + "  \n"
        for lemma, offs in sorted(senses.items()))
    (folder / "index.noun").write_text(index, encoding="utf-8")
    if lexnames is not None:
        (folder / "lexnames").write_text(lexnames, encoding="utf-8")
    return offsets


def write_fortunes(folder: Path, topic: str, entries: list[str]) -> Path:
    """A fortune file: the entries, each followed by a line holding only ``%``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / topic
    path.write_text("".join(f"{e}\n%\n" for e in entries), encoding="utf-8")
    return path


def lzw_compress(data: bytes, maxbits: int = 16, clear_when_full: bool = False) -> bytes:
    """compress(1)'s LZW stream of ``data`` (no header): codes of 9..``maxbits`` bits, LSB
    first, in groups of n_bits bytes, a group padded whenever the width changes or after CLEAR
    (emitted, as cl_block does, once the table is full if ``clear_when_full``)."""
    maxmax = 1 << maxbits
    out = bytearray()
    st = {"n_bits": 9, "maxcode": 511, "free": 257}
    group: list[int] = []

    def flush(nbytes: int) -> None:
        value = sum(c << (i * st["n_bits"]) for i, c in enumerate(group))
        out.extend(value.to_bytes(nbytes, "little"))
        group.clear()

    def put(code: int, clear: bool = False) -> None:
        group.append(code)
        if len(group) == 8:
            flush(st["n_bits"])
        if st["free"] > st["maxcode"] or clear:
            if group:
                flush(st["n_bits"])
            st["n_bits"] = 9 if clear else st["n_bits"] + 1
            st["maxcode"] = maxmax if st["n_bits"] == maxbits else (1 << st["n_bits"]) - 1

    table = {bytes([i]): i for i in range(256)}
    ent = data[:1]
    for b in data[1:]:
        cand = ent + bytes([b])
        if cand in table:
            ent = cand
            continue
        put(table[ent])
        if st["free"] < maxmax:
            table[cand] = st["free"]
            st["free"] += 1
        elif clear_when_full:
            table = {bytes([i]): i for i in range(256)}
            st["free"] = 257
            put(256, clear=True)
        ent = bytes([b])
    if ent:
        put(table[ent])
    if group:
        flush((len(group) * st["n_bits"] + 7) // 8)
    return bytes(out)


def bible_data(text: str, window: int = 65536) -> bytes:
    """A bible-kjv ``bible.data`` holding ``text``: the tsl header, the window table, the
    compress(1) magic and one LZW stream per ``window`` bytes of text."""
    raw = text.encode("ascii")
    streams = [lzw_compress(raw[i:i + window]) for i in range(0, len(raw), window)]
    header = b"EC02" + b"Compressed Data File".ljust(80, b"\0")
    header += struct.pack(">II", window, len(streams))
    pos = len(header) + 4 * (len(streams) + 1) + 3
    starts = []
    for s in streams:
        starts.append(pos)
        pos += len(s)
    table = b"".join(struct.pack(">I", p) for p in [*starts, pos])
    return header + table + b"\x1f\x9d\x90" + b"".join(streams)


KJV_VERSES = [
    ("Ge", 1, 1, "In the beginning God created the heaven and the earth."),
    ("Ge", 1, 2, "And the earth was without form, and void; and darkness was upon the face of the deep."),
    ("Ge", 1, 3, "And God said, Let there be light: and there was light."),
    ("Ge", 1, 4, "And God saw the light, that it was good: and God divided the light from the darkness."),
    ("Ge", 2, 1, "Thus the heavens and the earth were finished, and all the host of them."),
    ("SSol", 1, 1, "The song of songs, which is Solomon's."),
    ("1Sm", 1, 1, "Now there was a certain man of Ramathaimzophim, of mount Ephraim, and his name was Elkanah."),
    ("Mat", 5, 38, "Ye have heard that it hath been said, An eye for an eye, and a tooth for a tooth:"),
    ("Rev", 22, 21, "The grace of our Lord Jesus Christ be with you all. Amen."),
]
KJV_TEXT = "Holy Bible, Authorized (King James) Version.  Textfile 930105.\n" + "".join(
    f"{b}{c}:{v} {t}\n" for b, c, v, t in KJV_VERSES)

TRANSLATIONS = {  # word -> (fr, es, de)
    "apple": ("pomme", "manzana", "Apfel"), "bread": ("pain", "pan", "Brot"),
    "cat": ("chat", "gato", "Katze"), "dog": ("chien", "perro", "Hund"),
    "house": ("maison", "casa", "Haus"), "milk": ("lait", "leche", "Milch"),
    "red": ("rouge", "rojo", "rot"), "tree": ("arbre", "árbol", "Baum"),
    "water": ("eau", "agua", "Wasser"), "wine": ("vin", "vino", "Wein"),
    "door": ("porte", "puerta", "Tür"), "book": ("livre", "libro", "Buch"),
    "bird": ("oiseau", "pájaro", "Vogel"), "fish": ("poisson", "pez", "Fisch"),
    "horse": ("cheval", "caballo", "Pferd"), "moon": ("lune", "luna", "Mond"),
    "sun": ("soleil", "sol", "Sonne"), "window": ("fenêtre", "ventana", "Fenster"),
    "green": ("vert", "verde", "grün"), "small": ("petit", "pequeño", "klein"),
    "cheese": ("fromage", "queso", "Käse"), "egg": ("œuf", "huevo", "Ei"),
    "salt": ("sel", "sal", "Salz"), "hat": ("chapeau", "sombrero", "Hut"),
    "head": ("tête", "cabeza", "Kopf"), "night": ("nuit", "noche", "Nacht"),
}
WORDS = sorted(TRANSLATIONS)
# supersense words, 3 per category of SUPERSENSES (lexnames numbers in brackets)
CATEGORY_WORDS = {5: ["horse", "sheep", "eagle"], 6: ["hammer", "chair", "needle"],
                  8: ["elbow", "liver", "skull"], 13: ["cheese", "soup", "honey"],
                  15: ["valley", "harbor", "desert"], 18: ["baker", "nurse", "pilot"],
                  27: ["copper", "sand", "wax"], 28: ["dawn", "winter", "noon"]}
FORTUNES = {
    "computers": ["The computer is down. -- every office", "Real programmers never comment their code.",
                  "An eye for an eye, and a tooth for a tooth: so said the system administrator."],
    "food": ["Never eat more than you can lift. -- Miss Piggy", "Soup is the cure for everything, said grandma.",
             "An apple a day keeps the doctor away, they say."],
    "law": ["The lawyer who represents himself has a fool for a client.", "Possession is nine points of the law.",
            "A verbal contract isn't worth the paper it's written on."],
    "love": ["Love is blind, but marriage restores its sight.", "All you need is love, the song says.",
             "Love conquers all things except poverty and toothache."],
    "science": ["Science is organized knowledge, said a wise man.", "Nothing is as simple as it seems.",
                "Entropy always wins in the end, sooner or later."],
    "sports": ["It's not whether you win or lose, but how you play.", "Baseball is ninety percent mental.",
               "The race is not always to the swift, but that's the way to bet."],
}


def write_text_root(root: Path, extra_synsets: tuple[Synset, ...] = ()) -> None:
    """Every file :func:`clbench.data.text_tasks.build_text_v1` reads, under ``root/<source>/``:
    26 words in all three dictionaries (plus entries the filters must drop), 8 x 3 supersense
    words and their definitions, 6 fortune topics of 3 entries, and 9 KJV verses (one shares
    an 8-word sequence with a ``computers`` fortune, so it must never be held-out prose)."""
    for lang, pair in enumerate(("eng-fra", "eng-spa", "eng-deu")):
        entries = [(w, f"{w} /x/\n{TRANSLATIONS[w][lang]}\n") for w in WORDS]
        entries += [("run", "run /rʌn/\n1. courir\n2. fuite\n"),          # two senses: dropped
                    ("abc", "ABC /eibiːsiː/\nalphabet\n"),               # not its own entry
                    ("make", "make /meik/\nfaire quelque chose\n"),      # not one word
                    ("taxi", "taxi /taksi/\ntaxi\n")]                    # the headword itself
        write_dictd(root / "dictd", f"freedict-{pair}", entries)
    synsets = [Synset(3, ("entity",), "that which is perceived or known or inferred to exist")]
    for lex, words in CATEGORY_WORDS.items():
        synsets += [Synset(lex, (w, f"{w} thing"), f'a {lex} kind of thing number {i} here; "a {w}"')
                    for i, w in enumerate(words)]
    synsets.append(Synset(9, ("idea",), "the content of cognition called an idea"))   # word in gloss
    synsets += extra_synsets
    write_wordnet(root / "wordnet", synsets)
    for topic, entries in FORTUNES.items():
        write_fortunes(root / "fortunes", topic, entries)
    (root / "bible-kjv").mkdir(parents=True, exist_ok=True)
    (root / "bible-kjv" / "bible.data").write_bytes(bible_data(KJV_TEXT, window=256))
