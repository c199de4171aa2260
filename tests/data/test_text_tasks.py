"""text-v1 task builder on a tiny data root in the real formats: filters, seeded disjoint
balanced splits, held-out prose, fingerprints, normalisation and the missing-file errors."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from clbench.data.text_tasks import (
    ANSWER_SEPARATOR,
    FORTUNE_TOPICS,
    SUPERSENSES,
    N_DISTRACTORS,
    TASK_NAMES,
    TEXT_V1_VERSION,
    build_general_prose,
    candidate_pools,
    build_text_tasks,
    build_text_v1,
    normalise,
)
from clbench.errors import DataError
from tests.data.text_formats import CATEGORY_WORDS, FORTUNES, TRANSLATIONS, WORDS, write_text_root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text-root")
    write_text_root(path)
    return path


def _pairs(examples: list) -> list[tuple[str, str]]:
    return [(e.prompt, e.answer) for e in examples]


def test_version_is_pinned() -> None:
    """Editing a template or filter changes this digest: bump TEMPLATE_REVISION and this pin."""
    assert TEXT_V1_VERSION == "text-v1.2+9251f93d8b"


def test_tasks_and_their_examples(root: Path) -> None:
    tasks = build_text_tasks(seed=0, n_train=4, n_test=3, data_root=root)
    assert [t.name for t in tasks] == list(TASK_NAMES)
    assert [t.kind for t in tasks] == ["choice"] * 6
    for t in tasks:
        assert (len(t.train), len(t.test)) == (4, 3)
        assert t.template_version == f"{TEXT_V1_VERSION}:{t.name}" and len(t.fingerprint) == 64
        for e in t.train + t.test:
            assert e.prompt and e.answer and not e.prompt.endswith(" ") and "\n" not in e.answer
            assert e.answer in e.choices
            if t.choices:                      # class-balanced: the classes are the choices
                assert e.choices == t.choices
            else:                              # the answer among other examples' answers
                assert len({normalise(c) for c in e.choices}) == len(e.choices) == N_DISTRACTORS + 1
    fr, es, de = tasks[:3]
    for lang, task, language in ((0, fr, "French"), (1, es, "Spanish"), (2, de, "German")):
        for e in task.train + task.test:
            word = e.prompt.split("English: ")[1].split("\n")[0]
            assert e.prompt.endswith(f"\n{language}:") and e.answer == TRANSLATIONS[word][lang]
    assert tasks[3].choices == SUPERSENSES and tasks[5].choices == FORTUNE_TOPICS
    assert [t.choices for t in tasks[:3]] + [tasks[4].choices] == [()] * 4
    print(tasks[0].test[0].prompt + ANSWER_SEPARATOR + tasks[0].test[0].answer)


def test_filters_drop_what_they_should(root: Path) -> None:
    pools = candidate_pools(root)
    assert list(pools) == list(TASK_NAMES)
    # run (2 senses), abc (ABC's own entry), make (2 words), taxi (itself) are dropped
    for name in TASK_NAMES[:3]:
        assert sorted(e.prompt.split("English: ")[1].split("\n")[0] for e in pools[name]) == sorted(WORDS)
    with pytest.raises(DataError, match=r"en-fr: n_train \+ n_test = 27 but only 26 examples"):
        build_text_tasks(seed=1, n_train=20, n_test=7, data_root=root)
    answers = [e.answer for e in pools["definition"]]
    assert "idea" not in answers and "entity" in answers and len(answers) == len(set(answers)) == 25
    assert all(e.answer.lower() not in e.prompt.lower() for e in pools["definition"])
    words = {e.prompt.split('"')[1]: e.answer for e in pools["supersense"]}
    lexnames = {5: "animal", 6: "artifact", 8: "body", 13: "food", 15: "location", 18: "person",
                27: "substance", 28: "time"}
    assert words == {w: lexnames[lex] for lex, ws in CATEGORY_WORDS.items() for w in ws}
    quotes = {e.prompt.split("Quote: ")[1].split("\n")[0]: e.answer for e in pools["fortune-topic"]}
    assert quotes == {q: topic for topic, qs in FORTUNES.items() for q in qs}


def test_determinism_and_disjoint_splits(root: Path) -> None:
    a = build_text_v1(seed=3, n_train=4, n_test=4, n_prose=3, data_root=root)
    b = build_text_v1(seed=3, n_train=4, n_test=4, n_prose=3, data_root=root)
    c = build_text_v1(seed=4, n_train=4, n_test=4, n_prose=3, data_root=root)
    assert a == b and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert any(_pairs(x.test) != _pairs(y.test) for x, y in zip(a.tasks, c.tasks))
    for t in a.tasks + c.tasks:
        assert not {e.prompt for e in t.train} & {e.prompt for e in t.test}
        assert len({e.prompt for e in t.train + t.test}) == len(t.train) + len(t.test)
    # the test set depends on the seed and n_test only, not on n_train
    d = build_text_tasks(seed=3, n_train=1, n_test=4, data_root=root)
    assert [_pairs(t.test) for t in d] == [_pairs(t.test) for t in a.tasks]
    assert [t.fingerprint for t in d] != [t.fingerprint for t in a.tasks]   # sizes are hashed


def test_distractors_are_the_tasks_own_answers_and_do_not_depend_on_the_seed(root: Path) -> None:
    pools = candidate_pools(root)
    for name in ("en-fr", "en-es", "en-de", "definition"):
        answers = {e.answer for e in pools[name]}
        assert all(set(e.choices) <= answers for e in pools[name])
        positions = Counter(e.choices.index(e.answer) for e in pools[name])
        assert len(positions) > 1, name                      # the answer is not always first
    by_seed = [{e.prompt: e.choices for t in build_text_tasks(seed=s, n_train=4, n_test=4,
                                                               data_root=root)
                for e in t.train + t.test} for s in (3, 4)]
    common = set(by_seed[0]) & set(by_seed[1])
    assert common and all(by_seed[0][p] == by_seed[1][p] for p in common)


@pytest.mark.parametrize("n_train, n_test", [(6, 12), (5, 3), (8, 8)])
def test_choice_tasks_are_balanced(root: Path, n_train: int, n_test: int) -> None:
    for t in build_text_tasks(seed=2, n_train=n_train, n_test=n_test, data_root=root):
        if not t.choices:                    # per-example choices: nothing to balance
            continue
        n_classes = len(t.choices)
        for split, n in ((t.train, n_train), (t.test, n_test)):
            counts = Counter(e.answer for e in split)
            full = [counts.get(k, 0) for k in t.choices]
            assert sum(full) == n and max(full) - min(full) <= 1, (t.name, full)
            if n % n_classes == 0:
                assert set(full) == {n // n_classes}


def test_too_few_examples_is_a_clear_error(root: Path) -> None:
    with pytest.raises(DataError, match=r"supersense: .* only 3 per class x 8 classes = 24") as e:
        build_text_tasks(seed=0, n_train=20, n_test=5, data_root=root)
    assert "\n" not in str(e.value)


def test_general_prose_never_overlaps_a_task(root: Path) -> None:
    prose = build_general_prose(seed=0, n_passages=6, data_root=root)
    assert len(prose.passages) == len(set(prose.passages)) == 6
    assert not any("tooth" in p for p in prose.passages)     # shares 8 words with a fortune
    assert any(p.startswith("In the beginning God created") for p in prose.passages)
    with pytest.raises(DataError, match="7 passages asked for, 6 available"):
        build_general_prose(seed=0, n_passages=7, data_root=root)
    draws = {tuple(build_general_prose(seed=s, n_passages=2, data_root=root).passages) for s in range(5)}
    assert len(draws) > 1                                      # the seed picks the passages


def test_fingerprint_follows_the_raw_files(root: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    before = build_text_tasks(seed=0, n_train=2, n_test=2, data_root=copy)
    sports = copy / "fortunes" / "sports"
    sports.write_text(sports.read_text() + "Winning isn't everything, it's the only thing.\n%\n")
    after = build_text_tasks(seed=0, n_train=2, n_test=2, data_root=copy)
    changed = [x.name for x, y in zip(before, after) if x.fingerprint != y.fingerprint]
    assert changed == ["fortune-topic"]


@pytest.mark.parametrize("missing, package", [
    ("fortunes/sports", "apt-get install fortunes"),
    ("wordnet/index.noun", "apt-get install wordnet-base"),
    ("dictd/freedict-eng-deu.dict.dz", "apt-get install dict-freedict-eng-deu"),
    ("bible-kjv/bible.data", "apt-get install bible-kjv-text"),
])
def test_a_missing_file_names_its_package(root: Path, tmp_path: Path, missing: str, package: str) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / missing).unlink()
    with pytest.raises(DataError) as e:
        build_text_v1(seed=0, n_train=1, n_test=1, n_prose=1, data_root=copy)
    msg = str(e.value)
    assert "\n" not in msg and package in msg and Path(missing).name in msg


def test_normalise() -> None:
    assert normalise("  Le Chat.\n and more") == "chat"
    assert normalise("L’Amour!") == normalise("l'amour") == "amour"
    assert normalise("«Großvater»") == "großvater"
    assert normalise("Die Katze") == "katze" and normalise("die") == "die"   # one word: no article
    assert normalise("the Big  Apple") == "big apple"
    assert normalise("árbol") != normalise("arbol")                          # accents matter
    assert normalise("'quoted' -dash- well-known") == "quoted dash well-known"
    assert normalise("") == "" and normalise("...") == ""
