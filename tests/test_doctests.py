"""Every ``>>>`` example in the pure modules runs and prints what it says (``doctest``).

A pure module computes without training or reading datasets that a machine may lack, so its
examples are cheap enough to run on every test. Modules whose examples train or need data show
commands or code without ``>>>`` prompts, or are listed here once their examples are cheap.
"""
from __future__ import annotations

import doctest
import importlib
import os

import pytest

PURE = [
    "clbench.atomic", "clbench.errors", "clbench.registry", "clbench.streams", "clbench.suites",
    "clbench.run.config", "clbench.run.plan", "clbench.run.logs", "clbench.metrics.cl",
    "clbench.metrics.flags", "clbench.board.stats", "clbench.board.paired", "clbench.board.protocol",
    "clbench.metrics.registry", "clbench.validation", "clbench.schemas",
    "clbench.models", "clbench.models.base", "clbench.models.mlp", "clbench.models.cnn",
    "clbench.models.vit", "clbench.models.resnet", "clbench.models.convnext",
    "clbench.models.multihead",
    "clbench.sae.topk", "clbench.sae.relu_l1", "clbench.sae.crosscoder", "clbench.sae.quality",
    "clbench.sae.saelens", "clbench.data.class_names",
]


@pytest.mark.parametrize("name", PURE)
def test_module_examples_run(name: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.attempted > 0, f"{name} has no >>> example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
