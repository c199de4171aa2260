"""The plan of a sweep: method-scoped overrides reach exactly the cells with that method."""
from __future__ import annotations

from pathlib import Path

import pytest

from clbench.errors import ClbenchError
from clbench.run.plan import plan
from clbench.suites import Cell


def _cells(*strategies: str) -> list[Cell]:
    return [Cell("split-digits", "mlp", s, 0) for s in strategies]


def test_method_override_reaches_only_the_cells_with_that_method(tmp_path: Path) -> None:
    """The README's grid (naive, ewc, replay+ewc with ewc.ewc_lambda=500): naive keeps its
    default path; both EWC cells get lambda 500 and a tagged path."""
    planned = plan(_cells("naive", "ewc", "replay+ewc"), ["epochs=2", "ewc.ewc_lambda=500"],
                   tmp_path)
    naive, ewc, both = planned
    assert naive.config.strategy_params == {"naive": {}}
    assert naive.config.train["epochs"] == 2
    assert ewc.config.strategy_params["ewc"]["ewc_lambda"] == 500.0
    assert both.config.strategy_params["ewc"]["ewc_lambda"] == 500.0
    assert both.config.strategy_params["replay"] == plan(_cells("replay+ewc"), [], tmp_path)[
        0].config.strategy_params["replay"]
    default_ewc = plan(_cells("ewc"), ["epochs=2"], tmp_path)[0]
    assert ewc.tag != default_ewc.tag and ewc.path != default_ewc.path


def test_method_override_with_no_cell_of_that_method_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match=r"ewc\.ewc_lambda=500: no cell runs method 'ewc'"):
        plan(_cells("naive", "replay"), ["ewc.ewc_lambda=500"], tmp_path)


@pytest.mark.parametrize("item, fragment", [
    ("ewc.ewc_lamda=500", "did you mean 'ewc.ewc_lambda'"),   # a typo in the parameter
    ("ewk.ewc_lambda=500", "unknown override key 'ewk.ewc_lambda'"),  # no such method
])
def test_misspelt_method_override_is_still_an_error(item: str, fragment: str,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ClbenchError, match=fragment):
        plan(_cells("naive", "ewc"), [item], tmp_path)
