"""The metric registry: complete, well-formed, the one source of every module's metric view."""
from __future__ import annotations

import doctest
import re
from typing import Any

import pytest

import clbench
from clbench.analyze.measures import FEATURE_FORGETTING_METRICS
from clbench.board.check import STORED
from clbench.board.rank import SHOWN
from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.metrics import cl, mono, registry
from clbench.metrics.cl import CL_METRICS, cl_metrics
from clbench.metrics.mono import MONO_METRICS
from clbench.metrics.registry import (GROUPS, METRICS, PROBE_KS, Metric, check_direction,
                                      directions, listed, metric, register)
from clbench.run.mono import MONO_BLOCK_METRICS
from clbench.sae.quality import QUALITY_METRICS

#: a source in parentheses at the end of the formula: an author and a year, or clbench itself
CITED = re.compile(r"\((.*\b(19|20)\d\d\b.*|clbench)\)$")


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_is_well_formed(name: str) -> None:
    m = metric(name)
    assert m.name == name and isinstance(m.higher_is_better, bool)
    assert m.header.strip() and m.scale > 0 and m.group in GROUPS
    assert m.formula.strip() and "\n" not in m.formula and CITED.search(m.formula), m.formula
    assert METRICS.get(name).description == m.formula
    assert m.arrow == ("higher is better" if m.higher_is_better else "lower is better")
    assert m.entry(0.5) == {"value": 0.5, "higher_is_better": m.higher_is_better}


def test_headers_are_unique_and_listed_covers_every_group() -> None:
    headers = [m.header for m in listed()]
    assert len(set(headers)) == len(headers) == len(METRICS)
    assert [m.group for m in listed()] == sorted((m.group for m in listed()), key=GROUPS.index)


def test_formulas_cite_their_papers() -> None:
    assert "Lopez-Paz & Ranzato" in metric("bwt").formula
    assert "Lopez-Paz & Ranzato" in metric("fwt").formula
    assert "Chaudhry et al." in metric("forgetting_max").formula
    assert "Rebuffi et al." in metric("avg_incremental_accuracy").formula


@pytest.mark.parametrize("view, group, prefix", [
    (CL_METRICS, "cl", ""), (QUALITY_METRICS, "sae", "sae_"), (MONO_METRICS, "mono", "mono_"),
    (FEATURE_FORGETTING_METRICS, "ff", ""),
])
def test_module_views_are_the_registry(view: dict[str, bool], group: str, prefix: str) -> None:
    assert view == directions(group, prefix)
    for name, hib in view.items():
        assert metric(prefix + name).higher_is_better is hib


def test_mono_block_view_and_probe_ks() -> None:
    assert MONO_BLOCK_METRICS == {**directions("sae"), **directions("mono")}
    assert mono.PROBE_KS == PROBE_KS
    assert {f"mono_sparse_probe_k{k}" for k in PROBE_KS} <= set(METRICS.names())


def test_cl_metrics_returns_exactly_the_cl_group() -> None:
    assert set(cl_metrics([[0.5, 0.5], [0.5, 0.5]], [0.1, 0.1])) == set(directions("cl"))


@pytest.mark.parametrize("name", [*SHOWN, *STORED])
def test_table_columns_and_baseline_metrics_are_registered(name: str) -> None:
    assert name in METRICS


def test_known_directions() -> None:
    """The facts every table and check relies on (lower is better for forgetting and costs)."""
    assert metric("final_accuracy").higher_is_better and metric("bwt").higher_is_better
    for name in ("forgetting_max", "forgetting_first", "state_bytes", "train_seconds",
                 "mono_seconds", "sae_fvu", "mono_davies_bouldin", "ff_crosscoder_fvu"):
        assert not metric(name).higher_is_better, name
    assert (metric("final_accuracy").header, metric("final_accuracy").scale) == ("final acc %", 100.0)
    assert (metric("state_bytes").header, metric("state_bytes").scale) == ("state MB", 1e-6)


def test_unknown_metric_names_the_closest() -> None:
    with pytest.raises(ClbenchError, match=r"unknown metric 'forgeting_max'; did you mean 'forgetting_max'"):
        metric("forgeting_max")
    with pytest.raises(ClbenchError, match=r"known: .*final_accuracy"):
        metric("zzz")


def test_check_direction() -> None:
    assert check_direction("bwt", True, "f.json") is metric("bwt")
    with pytest.raises(ClbenchError) as e:
        check_direction("bwt", False, "f.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("f.json: metric 'bwt'") and "higher is better" in msg
    with pytest.raises(ClbenchError, match=r"^f\.json: unknown metric 'bwtt'; did you mean 'bwt'"):
        check_direction("bwtt", True, "f.json")


@pytest.mark.parametrize("bad, why", [
    (Metric("x_new", True, "", 1.0, "x  (clbench)", "cl"), "header"),
    (Metric("x_new", True, "x", 0.0, "x  (clbench)", "cl"), "scale"),
    (Metric("x_new", True, "x", 1.0, "a\nb", "cl"), "one-line formula"),
    (Metric("x_new", True, "x", 1.0, "", "cl"), "one-line formula"),
    (Metric("x_new", True, "x", 1.0, "x  (clbench)", "nope"), "group"),
    (Metric("bwt", True, "BWT %", 100.0, "x  (clbench)", "cl"), "registered twice"),
])
def test_register_refuses_malformed_metrics(bad: Metric, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        register(bad)
    assert "x_new" not in METRICS


def test_metric_is_frozen() -> None:
    with pytest.raises(AttributeError):
        metric("bwt").higher_is_better = False  # type: ignore[misc]


@pytest.mark.parametrize("module", [cl, registry, mono])
def test_docstring_examples_run(module: Any) -> None:
    """The same as ``pytest --doctest-modules`` on these modules."""
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failed == 0


def test_ls_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(METRICS)
    for line, m in zip(lines, listed()):
        assert line.split()[:2] == [m.name, m.direction]
        assert f"  {m.header}" in line and line.endswith(f"  {m.formula}")


@pytest.fixture(scope="module")
def real_run() -> clbench.RunResult:
    """The runner's default metrics, monosemanticity block included, on one short real run."""
    r = clbench.run(clbench.resolve_config("split-digits", "naive", "mlp", seed=0,
                                           overrides=["epochs=1"]))
    assert r.status == "ok", r.error
    return r


def test_every_metric_the_runner_writes_is_registered(real_run: clbench.RunResult) -> None:
    written = real_run.metrics
    assert set(directions("cl")) | set(directions("sae")) | set(directions("mono")) <= set(written)
    assert {"state_bytes", "train_seconds", "mono_seconds"} <= set(written)
    for name, m in written.items():
        assert name in METRICS, name
        assert m["higher_is_better"] is metric(name).higher_is_better, name
    assert set(real_run.to_json()["metrics"]) == set(written)
