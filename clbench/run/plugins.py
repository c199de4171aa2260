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
    experience: one row of the accuracy matrix R; ``top_share[j]`` is the share of its test
    rows given the most frequent predicted class (1.0: the model answered one class to all).
    """

    def __init__(self) -> None:
        super().__init__()
        self.row: list[float] = []
        self.top_share: list[float] = []
        self._correct = 0
        self._seen = 0
        self._counts: dict[int, int] = {}

    def before_eval(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self.row, self.top_share = [], []

    def before_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self._correct = self._seen = 0
        self._counts = {}

    def after_eval_iteration(self, strategy, **kwargs) -> None:  # noqa: ANN001
        pred = strategy.mb_output.argmax(dim=1)
        self._correct += int((pred == strategy.mb_y).sum())
        self._seen += len(strategy.mb_y)
        for c, n in zip(*(v.tolist() for v in pred.unique(return_counts=True))):
            self._counts[c] = self._counts.get(c, 0) + n

    def after_eval_exp(self, strategy, **kwargs) -> None:  # noqa: ANN001
        self.row.append(self._correct / max(self._seen, 1))
        self.top_share.append(max(self._counts.values(), default=0) / max(self._seen, 1))


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

