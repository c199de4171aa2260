"""Shared fixtures: small real streams built once per session; the list of slow tests."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

from clbench.streams import Stream, build_stream
from tests.slow import SLOW_TESTS, stale_names


@pytest.fixture(scope="session", autouse=True)
def _fixed_threads() -> None:
    """One thread for the whole session: the determinism guarantee needs a fixed count, and on
    2 cores one thread per process avoids OpenMP spin-waiting against other processes."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _no_prefix_store() -> Iterator[None]:
    """Frozen-prefix states are not kept on disk between processes in tests (each test that
    checks the store turns it on with its own ``CLBENCH_CACHE``)."""
    from clbench.models.prefix_store import ENV_SWITCH
    old = os.environ.get(ENV_SWITCH)
    os.environ[ENV_SWITCH] = "0"
    yield
    if old is None:
        os.environ.pop(ENV_SWITCH, None)
    else:
        os.environ[ENV_SWITCH] = old


@pytest.fixture(scope="session")
def digits_stream() -> Stream:
    return build_stream("split-digits", seed=0)


@pytest.fixture(scope="session")
def mnist1d_stream() -> Stream:
    return build_stream("split-mnist1d", seed=0)


@pytest.fixture(scope="session")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The text path's inputs, made once per session: ``"lm"``, a tiny random Llama with a
    character tokenizer saved with ``save_pretrained`` (:func:`tests.models.conftest.save_tiny_lm`;
    ``--set model.weights=DIR``), and ``"data"``, a data root of tiny files in the real Debian
    formats that text-v1 reads (:func:`tests.data.text_formats.write_text_root`)."""
    pytest.importorskip("transformers")
    from tests.data.text_formats import write_text_root
    from tests.models.conftest import save_tiny_lm

    root = tmp_path_factory.mktemp("text")
    write_text_root(root / "data")
    return {"lm": save_tiny_lm(root / "lm"), "data": root / "data"}



@pytest.hookimpl(tryfirst=True)   # before ``-m`` / ``-k`` deselect anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests named in :data:`tests.slow.SLOW_TESTS` ``slow`` (pyproject's addopts
    deselect them); a name there that matches no collected test is a usage error."""
    for item in items:
        if item.nodeid in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    stale = stale_names([item.nodeid for item in items], [str(a) for a in config.args])
    if stale:
        raise pytest.UsageError(f"tests/slow.py SLOW_TESTS names no test: {stale}")
