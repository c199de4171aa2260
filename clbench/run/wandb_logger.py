"""Avalanche's W&B logger on current wandb, for ``clbench run --log wandb`` (:mod:`clbench.run.logs`).

    logger = ScalarWandBLogger(project_name="clbench", run_name="naive/seed0", dir="seed0.logs/wandb",
                               params={"mode": "offline", "id": "a1b2c3d4e5f6"})
"""
from __future__ import annotations

from typing import Any

from avalanche.logging import WandBLogger


class ScalarWandBLogger(WandBLogger):
    """Avalanche 0.6's W&B logger, for the scalars clbench logs, on current wandb: Avalanche's
    own makes its run id with ``wandb.util.generate_id`` and type-checks every value against
    ``wandb.viz.CustomChart``, both gone from wandb (0.31 has neither), so the run id is given
    (:mod:`clbench.run.logs` passes one) and a value is logged when it is a number, at the
    strategy's iteration (``x_plot``)."""

    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        self.step = x_plot
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.wandb.log({name: value}, step=self.step)
