"""clbench's own bookkeeping plugins (no learning): the accuracy matrix and a divergence guard.

    acc = AccuracyRecorder()
    strategy = Naive(model, opt, plugins=[acc])
    strategy.eval(test_stream); acc.row  # [accuracy on each test experience]
"""
from __future__ import annotations

import math

from avalanche.core import SupervisedPlugin


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class AccuracyRecorder(SupervisedPlugin):
    """Counts correct top-1 predictions per evaluated experience.

    After ``strategy.eval(stream)``, ``row[j]`` is the accuracy on the ``j``-th evaluated
    experience: one row of the accuracy matrix R.
    """

    def __init__(self) -> None:
        super().__init__()
        self.row: list[float] = []
        self._correct = 0
        self._seen = 0

    def before_eval(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self.row = []

    def before_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self._correct = self._seen = 0

    def after_eval_iteration(self, strategy, **kwargs) -> None:  # noqa: ANN001
        pred = strategy.mb_output.argmax(dim=1)
        self._correct += int((pred == strategy.mb_y).sum())
        self._seen += len(strategy.mb_y)

    def after_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self.row.append(self._correct / max(self._seen, 1))


class DivergenceGuard(SupervisedPlugin):
    """Stops a run whose training loss is not finite, naming the experience and iteration."""

    def after_backward(self, strategy, **kwargs) -> None:  # noqa: ANN001
        loss = float(strategy.loss.detach())
        if not math.isfinite(loss):
            raise DivergedError(
                f"training loss became {loss} at experience "
                f"{strategy.experience.current_experience}, iteration "
                f"{strategy.clock.train_epoch_iterations}; lower the learning rate "
                f"(--set lr=...) or the method's regularisation weight")

