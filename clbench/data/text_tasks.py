"""The tasks of the ``text-v1`` stream, built from real Debian text data, tokenizer-free.

    >>> from clbench.data.text_tasks import ANSWER_SEPARATOR, build_text_v1, normalise
    >>> v1 = build_text_v1(seed=0)                # ~10 s: reads the Debian files below
    >>> [(t.name, t.kind, len(t.train), len(t.test)) for t in v1.tasks][:2]
    [('en-fr', 'choice', 200, 100), ('en-es', 'choice', 200, 100)]
    >>> print(v1.tasks[0].test[0].prompt + ANSWER_SEPARATOR + v1.tasks[0].test[0].answer)
    Translate the English word into French.
    English: ...
    French: ...
    >>> len(v1.tasks[0].test[0].choices)         # the answer and 3 other words' translations
    4
    >>> normalise(" Le Chat.\\n")
    'chat'

Tasks, in stream order (``kind``: ``choice`` is scored by the log-likelihood of each choice, the
answer being one of them; ``generate``, by exact match after :func:`normalise`, is supported by
the scorer but no text-v1 task uses it since revision 2, see below):

    en-fr, en-es, en-de  choice  English word -> its first FreeDict translation, among 4
    supersense           choice  noun -> its WordNet category, 8 balanced classes
    definition           choice  WordNet gloss -> the noun it defines, among 4
    fortune-topic        choice  fortune(6) quote -> its topic file, 6 balanced classes

The four-way tasks (revision 2) offer each example's answer with :data:`N_DISTRACTORS` other
candidates' answers of the same task (whose :func:`normalise`\d forms differ from it and from
each other), drawn once per candidate with ``default_rng([DISTRACTOR_SEED, task_number])`` and
shuffled, so an example's choices do not depend on the split seed; the prompt does not list them
(lm-evaluation-harness's cloze form). Revision 1 scored these four tasks by greedy generation:
SmolLM2-135M-Instruct's exact-match accuracy was 0-6% before and after fine-tuning on them
(2026-12-02, ``leaderboard/bench-lm.md`` of that day), a floor at which forgetting cannot show.

Filters, all deterministic (the constants below are part of :data:`TEXT_V1_VERSION`):
translation headwords are single lower-case words ``[a-z]{2,}`` whose :func:`main_definition
<clbench.data.dictd.main_definition>` has one sense and a one-word translation (letters,
inner ``-``/``'``, at most 20 characters, not the headword itself); the three translation
tasks share one English vocabulary, the words all three dictionaries translate so (eng-deu
alone has ~79,000, most of them rare; the intersection keeps common words). WordNet words are
``[a-z]{3,}`` lemmas seen in the tagged corpus (``tagsense_cnt >= 1``); a supersense word's
tagged senses all lie in one of :data:`SUPERSENSES`; a definition is the gloss (examples cut)
of a lemma's first sense whose first lemma it is, of 3 to 30 words, not containing the word,
and not shared by two words. Fortune entries are whitespace-collapsed, 20 to 300 characters,
and filed under one topic only. Available after filtering (Debian 12 packages):

    en-fr / en-es / en-de   1,715 words (each task, the same English words)
    supersense              3,462 words; the smallest class (food) has 116 -> 928 balanced
    definition              6,052 definitions
    fortune-topic           1,867 quotes; the smallest class (sports) has 103 -> 618 balanced
    general prose (KJV)     10,766 passages of <= 3 verses (of 10,770; 4 share text with a
                            fortune), from 31,102 verses

so the defaults (200 train + 100 test per task, 64 prose passages) fit every task, and no
task reaches TRACE's 5,000 per task.

Splits: each task draws from ``numpy.random.default_rng([seed, task_number])`` (so one task's
split does not depend on another's sizes): a permutation of its candidates (for the
class-balanced tasks, supersense and fortune-topic, the classes' permutations interleaved
round-robin, so every split is balanced to within one), the first ``n_test`` are the test set, the next ``n_train`` the training set.
No candidate is in both. The general prose is KJV passages that share no 8-word sequence with
any candidate of any task, drawn with ``default_rng([seed, 99])``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clbench.data.base import sha256_of
from clbench.data.dictd import first_translation, load_freedict, main_definition, n_senses
from clbench.data.fortunes import load_fortunes
from clbench.data.prose import load_kjv
from clbench.data.wordnet import load_wordnet_nouns
from clbench.errors import DataError

TaskKind = Literal["generate", "choice"]

TEMPLATE_REVISION = 2
"""Bump with any change of the templates or filters below (the test pins the digest)."""
ANSWER_SEPARATOR = " "
"""A model reads ``prompt + ANSWER_SEPARATOR + answer``; its loss covers the answer only."""
TEMPLATES = {
    "translate": "Translate the English word into {language}.\nEnglish: {word}\n{language}:",
    "supersense": "Which kind of thing is \"{word}\"? One of: {options}.\nKind:",
    "definition": "Which English noun has this meaning?\nMeaning: {definition}\nNoun:",
    "fortune-topic": "Which topic is this quote filed under? One of: {options}.\n"
                     "Quote: {text}\nTopic:",
}
LANGUAGES = {"en-fr": ("eng-fra", "French"), "en-es": ("eng-spa", "Spanish"),
             "en-de": ("eng-deu", "German")}
SUPERSENSES = ("animal", "artifact", "body", "food", "location", "person", "substance", "time")
"""WordNet noun categories (``noun.<name>``) of the supersense task, also its choices."""
FORTUNE_TOPICS = ("computers", "food", "law", "love", "science", "sports")
TASK_NAMES = (*LANGUAGES, "supersense", "definition", "fortune-topic")
HEADWORD, WNWORD = r"[a-z]{2,}", r"[a-z]{3,}"
ONE_WORD = r"[^\W\d_]+(?:[-'][^\W\d_]+)*"
MAX_ANSWER_CHARS, DEFINITION_WORDS, FORTUNE_CHARS, NGRAM = 20, (3, 30), (20, 300), 8
ARTICLES = ("the", "a", "an", "le", "la", "les", "un", "une", "des", "el", "los", "las",
            "una", "unos", "unas", "der", "die", "das", "ein", "eine")
VERSES_PER_PASSAGE = 3
N_DISTRACTORS, DISTRACTOR_SEED = 3, 7
DEFAULT_N_TRAIN, DEFAULT_N_TEST, DEFAULT_N_PROSE = 200, 100, 64
_CONSTRUCTION = (TEMPLATE_REVISION, ANSWER_SEPARATOR, sorted(TEMPLATES.items()), LANGUAGES,
                 SUPERSENSES, FORTUNE_TOPICS, HEADWORD, WNWORD, ONE_WORD, MAX_ANSWER_CHARS,
                 DEFINITION_WORDS, FORTUNE_CHARS, NGRAM, ARTICLES, VERSES_PER_PASSAGE,
                 N_DISTRACTORS, DISTRACTOR_SEED)
TEXT_V1_VERSION = f"text-v1.{TEMPLATE_REVISION}+{sha256_of(repr(_CONSTRUCTION).encode())[:10]}"
"""The stream's version: the revision and a digest of every template and filter constant."""


@dataclass(frozen=True)
class TextExample:
    """One example. ``choices`` empty: a generation task, scored by exact match after
    :func:`normalise`; else multiple choice and ``answer`` is one of ``choices``."""

    prompt: str
    answer: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextTask:
    """One task of the stream. ``choices``: the classes of a ``choice`` task (every example
    carries them too), ``()`` for ``generate``. ``fingerprint``: sha256 over the raw files
    read, the construction (:data:`TEXT_V1_VERSION`), the seed and the sizes; filled by the
    builders (empty only for tasks built by hand)."""

    name: str
    kind: TaskKind
    template_version: str
    train: list[TextExample]
    test: list[TextExample]
    choices: tuple[str, ...] = ()
    fingerprint: str = ""


@dataclass(frozen=True)
class HeldOutProse:
    """General prose never trained on, for perplexity: KJV passages of <= 3 verses."""

    passages: list[str]
    fingerprint: str


@dataclass(frozen=True)
class TextV1:
    """The whole stream's data: its tasks, its held-out prose, one fingerprint over both."""

    tasks: list[TextTask]
    prose: HeldOutProse
    version: str
    fingerprint: str


@dataclass(frozen=True)
class _Pool:
    """Every candidate of a task, in a fixed order, and the fingerprints of what it read."""

    name: str
    kind: TaskKind
    candidates: list[TextExample]
    choices: tuple[str, ...]   #: the classes of a class-balanced task; () if choices vary per example
    sources: tuple[str, ...]


def normalise(answer: str) -> str:
    """The form generated and reference answers are compared in: NFKC, the first line only,
    lower case, ``’`` as ``'``, punctuation and symbols removed except a ``-`` or ``'``
    inside a word, whitespace collapsed, then one leading English, French, Spanish or German
    article dropped (``the``, ``l'``, ``los``, ``eine``...) when a word follows it. Accents
    are kept: ``élan`` and ``elan`` differ.

        >>> normalise("Le chat"), normalise("L’Amour!"), normalise("«Großvater»"), normalise("die")
        ('chat', 'amour', 'großvater', 'die')
        >>> normalise("  s'abaisser ; more\\nnext line")
        "s'abaisser more"
    """
    text = unicodedata.normalize("NFKC", answer).strip().split("\n", 1)[0].lower()
    text = text.replace("’", "'")
    text = "".join(c if c in "-'" or unicodedata.category(c)[0] not in "PS" else " " for c in text)
    text = re.sub(r"(?<![^\W_])[-']+|[-']+(?![^\W_])", " ", text)   # a - or ' not inside a word
    words = text.split()
    if len(words) > 1 and words[0] in ARTICLES:
        words = words[1:]
    elif words and words[0].startswith("l'") and len(words[0]) > 2:
        words[0] = words[0][2:]
    return " ".join(words)


def build_text_tasks(seed: int, n_train: int = DEFAULT_N_TRAIN, n_test: int = DEFAULT_N_TEST,
                     data_root: Path | str | None = None) -> list[TextTask]:
    """The tasks of ``text-v1`` (:data:`TASK_NAMES`), each with ``n_train`` / ``n_test``
    examples; a :class:`DataError` when a task has fewer candidates than that."""
    return [_split(p, i, seed, n_train, n_test) for i, p in enumerate(_pools(data_root))]


def build_general_prose(seed: int, n_passages: int = DEFAULT_N_PROSE,
                        data_root: Path | str | None = None) -> HeldOutProse:
    """``n_passages`` KJV passages that overlap no candidate of any task (see the module)."""
    return _prose(_pools(data_root), seed, n_passages, data_root)


def build_text_v1(seed: int, n_train: int = DEFAULT_N_TRAIN, n_test: int = DEFAULT_N_TEST,
                  n_prose: int = DEFAULT_N_PROSE, data_root: Path | str | None = None) -> TextV1:
    """Tasks and held-out prose in one pass over the files."""
    pools = _pools(data_root)
    tasks = [_split(p, i, seed, n_train, n_test) for i, p in enumerate(pools)]
    prose = _prose(pools, seed, n_prose, data_root)
    fp = sha256_of(TEXT_V1_VERSION.encode(), *(t.fingerprint.encode() for t in tasks),
                   prose.fingerprint.encode())
    return TextV1(tasks, prose, TEXT_V1_VERSION, fp)


def holdout_text(v1: TextV1, fraction: float, seed: int) -> TextV1:
    """The same stream with a validation split in place of each task's test set.

    The text counterpart of :func:`clbench.streams.holdout`: a seeded ``fraction`` of each
    task's training examples (``max(1, round(fraction * n_train))``, drawn with
    ``default_rng([seed, task_number, 17])``) becomes that task's "test" examples and is never
    trained on; the rest stay training examples, in their order. The real test examples are
    not read, so hyperparameters chosen on this stream have not seen them. The held-out prose
    is unchanged (it is never trained on either)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    tasks = []
    for number, t in enumerate(v1.tasks):
        n_val = max(1, int(round(fraction * len(t.train))))
        if n_val >= len(t.train):
            raise DataError(f"text-v1 task {t.name}: validation={fraction} of {len(t.train)} "
                            "training examples leaves none to train on; raise stream.n_train")
        val = set(np.random.default_rng([seed, number, 17]).permutation(len(t.train))[:n_val])
        train = [x for i, x in enumerate(t.train) if i not in val]
        test = [x for i, x in enumerate(t.train) if i in val]
        fp = sha256_of(t.fingerprint.encode(), f"holdout={fraction} seed={seed}".encode())
        tasks.append(TextTask(t.name, t.kind, t.template_version, train, test, t.choices, fp))
    fp = sha256_of(v1.fingerprint.encode(), f"holdout={fraction} seed={seed}".encode())
    return TextV1(tasks, v1.prose, v1.version, fp)


def candidate_pools(data_root: Path | str | None = None) -> dict[str, list[TextExample]]:
    """Every candidate of each task after filtering, in the fixed order the splits permute
    (to inspect the filters, size a stream, or check contamination)."""
    return {p.name: p.candidates for p in _pools(data_root)}


def _pools(data_root: Path | str | None) -> list[_Pool]:
    return [*_translation_pools(data_root), *_wordnet_pools(data_root), _fortune_pool(data_root)]


def _translation_pools(data_root: Path | str | None) -> list[_Pool]:
    is_headword, is_word = re.compile(HEADWORD).fullmatch, re.compile(ONE_WORD).fullmatch
    translations: dict[str, dict[str, str]] = {}
    sources = []
    for task, (pair, _) in LANGUAGES.items():
        d = load_freedict(pair, data_root, keep=is_headword)
        sources.append(d.fingerprint)
        out = translations[task] = {}
        for head, definitions in d.entries.items():
            main = main_definition(head, definitions)
            word = first_translation(main) if main is not None and n_senses(main) == 1 else None
            if (word and is_word(word) and len(word) <= MAX_ANSWER_CHARS
                    and normalise(word) != head):
                out[head] = word
    shared = sorted(set.intersection(*(set(t) for t in translations.values())))
    return [_Pool(task, "choice",
                  _with_distractors([TextExample(TEMPLATES["translate"].format(language=language,
                                                                                word=w),
                                                 translations[task][w]) for w in shared],
                                    number),
                  (), tuple(sources))
            for number, (task, (_, language)) in enumerate(LANGUAGES.items())]


def _wordnet_pools(data_root: Path | str | None) -> list[_Pool]:
    wn = load_wordnet_nouns(data_root)
    is_word = re.compile(WNWORD).fullmatch
    options = ", ".join(SUPERSENSES)
    supersense, definitions = [], {}
    for lemma in sorted(wn.senses):
        senses = wn.senses[lemma]
        if not is_word(lemma) or senses.tagged < 1:
            continue
        kinds = {wn.synsets[o].lexname for o in senses.offsets[:senses.tagged]}
        if len(kinds) == 1 and (kind := kinds.pop().removeprefix("noun.")) in SUPERSENSES:
            prompt = TEMPLATES["supersense"].format(word=lemma, options=options)
            supersense.append(TextExample(prompt, kind, SUPERSENSES))
        first = wn.synsets[senses.offsets[0]]
        text = first.definition
        n_words = len(text.split())
        if (first.lemmas[0] == lemma and DEFINITION_WORDS[0] <= n_words <= DEFINITION_WORDS[1]
                and not re.search(rf"\b{lemma}\b", text.lower())):
            definitions.setdefault(text, []).append(lemma)
    defined = [TextExample(TEMPLATES["definition"].format(definition=text), words[0])
               for text, words in sorted(definitions.items()) if len(words) == 1]
    number = TASK_NAMES.index("definition")
    return [_Pool("supersense", "choice", supersense, SUPERSENSES, (wn.fingerprint,)),
            _Pool("definition", "choice", _with_distractors(defined, number), (),
                  (wn.fingerprint,))]


def _with_distractors(examples: list[TextExample], number: int) -> list[TextExample]:
    """Each example with :data:`N_DISTRACTORS` other examples' answers as its choices (see the
    module docstring); an example for which too few distinct answers exist is dropped."""
    rng = np.random.default_rng([DISTRACTOR_SEED, number])
    answers = [e.answer for e in examples]
    forms = [normalise(a) for a in answers]
    out = []
    for i, e in enumerate(examples):
        picked, seen = [e.answer], {forms[i]}
        for j in rng.permutation(len(examples)):
            if forms[j] not in seen:
                picked.append(answers[j])
                seen.add(forms[j])
                if len(picked) == N_DISTRACTORS + 1:
                    break
        if len(picked) == N_DISTRACTORS + 1:
            order = rng.permutation(len(picked))
            out.append(TextExample(e.prompt, e.answer, tuple(picked[int(k)] for k in order)))
    return out


def _fortune_pool(data_root: Path | str | None) -> _Pool:
    fortunes = load_fortunes(FORTUNE_TOPICS, data_root)
    filed: dict[str, set[str]] = {}
    for topic, entries in fortunes.entries.items():
        for entry in entries:
            text = " ".join(entry.split())
            if FORTUNE_CHARS[0] <= len(text) <= FORTUNE_CHARS[1]:
                filed.setdefault(text, set()).add(topic)
    options = ", ".join(FORTUNE_TOPICS)
    candidates = [TextExample(TEMPLATES["fortune-topic"].format(options=options, text=text),
                              next(iter(topics)), FORTUNE_TOPICS)
                  for text, topics in sorted(filed.items()) if len(topics) == 1]
    return _Pool("fortune-topic", "choice", candidates, FORTUNE_TOPICS, (fortunes.fingerprint,))


def _split(pool: _Pool, number: int, seed: int, n_train: int, n_test: int) -> TextTask:
    """Seeded, disjoint train/test split of a pool (balanced round-robin for choice tasks)."""
    if n_train < 0 or n_test < 0:
        raise DataError(f"{pool.name}: n_train and n_test must be >= 0, got {n_train}, {n_test}")
    rng = np.random.default_rng([seed, number])
    if pool.choices:
        by_class = [[c for c in pool.candidates if c.answer == k] for k in pool.choices]
        per_class = min(len(c) for c in by_class)
        orders = [rng.permutation(len(c))[:per_class] for c in by_class]
        ordered = [by_class[k][int(orders[k][i])] for i in range(per_class)
                   for k in range(len(by_class))]
        have = f"{per_class} per class x {len(by_class)} classes = {len(ordered)} balanced"
    else:
        ordered = [pool.candidates[int(i)] for i in rng.permutation(len(pool.candidates))]
        have = f"{len(ordered)}"
    if n_train + n_test > len(ordered):
        raise DataError(f"text-v1 task {pool.name}: n_train + n_test = {n_train + n_test} but "
                        f"only {have} examples are available; lower stream.n_train/n_test")
    test, train = ordered[:n_test], ordered[n_test:n_test + n_train]
    test = [test[int(i)] for i in rng.permutation(len(test))]
    train = [train[int(i)] for i in rng.permutation(len(train))]
    fp = sha256_of(TEXT_V1_VERSION.encode(), pool.name.encode(), *(s.encode() for s in pool.sources),
                   f"{seed} {n_train} {n_test}".encode())
    return TextTask(pool.name, pool.kind, f"{TEXT_V1_VERSION}:{pool.name}", train, test,
                    pool.choices, fp)


def _ngrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[^\W_]+", text.lower())
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def _prose(pools: list[_Pool], seed: int, n_passages: int,
           data_root: Path | str | None) -> HeldOutProse:
    kjv = load_kjv(data_root)
    seen: set[tuple[str, ...]] = set()
    for pool in pools:
        for c in pool.candidates:
            seen |= _ngrams(f"{c.prompt} {c.answer}")
    clean = [p for p in kjv.passages(VERSES_PER_PASSAGE) if not (_ngrams(p) & seen)]
    if not 0 <= n_passages <= len(clean):
        raise DataError(f"text-v1 general prose: {n_passages} passages asked for, "
                        f"{len(clean)} available; lower stream.n_prose")
    rng = np.random.default_rng([seed, 99])
    picked = [clean[int(i)] for i in rng.permutation(len(clean))[:n_passages]]
    sources = sorted({s for p in pools for s in p.sources})
    fp = sha256_of(TEXT_V1_VERSION.encode(), kjv.fingerprint.encode(),
                   *(s.encode() for s in sources), f"{seed} {n_passages}".encode())
    return HeldOutProse(picked, fp)
