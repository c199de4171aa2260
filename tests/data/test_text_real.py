"""The text-v1 readers and builder on the real Debian files (skipped where not installed), and
the modules' ``>>>`` examples, which read those files."""
from __future__ import annotations

import doctest
import importlib
from collections import Counter
from pathlib import Path

import pytest

from clbench.data.text_tasks import TASK_NAMES, TEXT_V1_VERSION, TextV1, build_text_v1, candidate_pools

REAL_FILES = [
    "/usr/share/dictd/freedict-eng-fra.index", "/usr/share/dictd/freedict-eng-spa.index",
    "/usr/share/dictd/freedict-eng-deu.index", "/usr/share/wordnet/data.noun",
    "/usr/share/wordnet/index.noun", "/usr/share/games/fortunes/food", "/usr/lib/bible.data",
]
MISSING = [f for f in REAL_FILES if not Path(f).is_file()]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"Debian text packages not installed ({', '.join(MISSING)}): "
                          f"bash ci/setup.sh as root")

# candidates after filtering, as the text_tasks docstring states them (Debian 12 packages)
AVAILABLE = {"en-fr": 1715, "en-es": 1715, "en-de": 1715, "supersense": 3462, "definition": 6052,
             "fortune-topic": 1867}
SMALLEST_CLASS = {"supersense": ("food", 116), "fortune-topic": ("sports", 103)}


@pytest.fixture(scope="module")
def v1() -> TextV1:
    return build_text_v1(seed=0)


def test_the_real_stream_at_its_defaults(v1: TextV1) -> None:
    assert v1.version == TEXT_V1_VERSION and [t.name for t in v1.tasks] == list(TASK_NAMES)
    for t in v1.tasks:
        assert (len(t.train), len(t.test)) == (200, 100)
        assert not {e.prompt for e in t.train} & {e.prompt for e in t.test}
        assert all(e.answer and "\n" not in e.answer for e in t.train + t.test)
        if not t.choices:
            assert all(len(e.choices) == 4 and e.answer in e.choices for e in t.train + t.test)
        else:
            for split in (t.train, t.test):
                counts = Counter(e.answer for e in split)
                assert set(counts) == set(t.choices) and max(counts.values()) - min(counts.values()) <= 1
    assert len(v1.prose.passages) == 64 and all(len(p) > 20 for p in v1.prose.passages)
    assert build_text_v1(seed=0, n_train=1, n_test=100, n_prose=1).tasks[0].test == v1.tasks[0].test


def test_what_the_real_data_holds() -> None:
    pools = candidate_pools()
    assert {k: len(v) for k, v in pools.items()} == AVAILABLE
    for name, (smallest, n) in SMALLEST_CLASS.items():
        counts = Counter(e.answer for e in pools[name])
        assert min(counts, key=lambda k: (counts[k], k)) == smallest and counts[smallest] == n
    fr = {e.prompt.split("English: ")[1].split("\n")[0]: e.answer for e in pools["en-fr"]}
    de = {e.prompt.split("English: ")[1].split("\n")[0]: e.answer for e in pools["en-de"]}
    assert (fr["dog"], de["dog"], fr["tree"], de["tree"]) == ("chien", "Hund", "arbre", "Baum")


@pytest.mark.parametrize("name", ["clbench.data.debian", "clbench.data.dictd", "clbench.data.wordnet",
                                  "clbench.data.fortunes", "clbench.data.prose", "clbench.data.text_tasks"])
def test_module_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} failed"
