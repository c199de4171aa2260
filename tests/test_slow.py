"""The slow list (tests/slow.py) names real tests, and its check catches a name that does not."""
from __future__ import annotations

import doctest

import tests.slow
from tests.slow import SLOW_TESTS, stale_names


def test_the_check_finds_a_renamed_slow_test() -> None:
    name = sorted(SLOW_TESTS)[0]
    file = name.split("::")[0]
    assert stale_names([name], []) == []
    assert name in stale_names([file + "::a_renamed_test"], [])
    assert stale_names([file + "::a_renamed_test"], [file + "::a_renamed_test"]) == []


def test_its_examples_run() -> None:
    result = doctest.testmod(tests.slow)
    assert result.attempted >= 3 and result.failed == 0
