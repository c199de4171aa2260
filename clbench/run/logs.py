"""Training curves through Avalanche's own loggers: ``clbench run --log csv,tensorboard,wandb``.

    clbench run --stream split-digits --strategy naive --seeds 0 --log csv
    # -> results/split-digits/mlp/naive/seed0.json           (the result, unchanged)
    #    results/split-digits/mlp/naive/seed0.logs/csv/training_results.csv, eval_results.csv

    >>> parse_log("csv,tensorboard")          # log_spec also imports their packages, once
    ('csv', 'tensorboard')
    >>> log_dir("results/split-digits/mlp/naive/seed0.json").as_posix()
    'results/split-digits/mlp/naive/seed0.logs'

    evaluator, loggers = make_evaluator(log_spec("csv"), log_dir(path), "naive/seed0", cfg.to_dict())
    result = run(cfg, evaluator=evaluator); close_loggers(loggers)

A logged run's strategy gets an :class:`~avalanche.training.plugins.EvaluationPlugin` with
Avalanche's loss and accuracy metrics (:func:`logged_metrics`): the training loss of every
mini-batch (``Loss_MB``) and epoch (``Loss_Epoch``), the training accuracy of every epoch, and
the loss and accuracy on every test experience at each evaluation (before training, then after
each experience, as the runner evaluates). Each chosen logger receives them:

* ``csv`` (:class:`~avalanche.logging.CSVLogger`): ``training_results.csv`` (one row per
  training experience and epoch: ``training_loss``, ``training_accuracy``) and
  ``eval_results.csv`` (one row per evaluated experience and training experience:
  ``eval_loss``, ``eval_accuracy``; ``training_exp`` is ``None`` for the evaluation before
  training); always available;
* ``tensorboard`` (:class:`~avalanche.logging.TensorboardLogger`): an events file of every
  metric as a scalar (``tensorboard --logdir results/``); ``pip install 'clbench[tensorboard]'``;
* ``wandb`` (:class:`~avalanche.logging.WandBLogger`): a W&B run named
  ``<stream>/<model>/<strategy>/seed<k>`` in project ``$WANDB_PROJECT`` (default ``clbench``),
  its files under ``wandb/``; ``pip install 'clbench[wandb]'``. Without ``WANDB_MODE`` set, W&B
  runs online only when an API key is configured and api.wandb.ai answers, else offline
  (``wandb sync <dir>`` uploads it later).

Logs live next to the result, in ``seed<k>.logs/<logger>/``, never inside the result JSON, and
change no result (the metrics only read the strategy's outputs). A cell skipped because its
result exists writes no logs; a re-run cell's old logs of the chosen loggers are replaced.
Logs are written by the process that runs the cell (on a Ray cluster: the worker's disk).
"""
from __future__ import annotations

import importlib
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError
from clbench.registry import unknown_name_message

#: logger name -> (the module it needs, the pip command that installs it; None: always there)
LOGGERS: dict[str, tuple[str | None, str | None]] = {
    "csv": (None, None),
    "tensorboard": ("tensorboard", "pip install 'clbench[tensorboard]'"),
    "wandb": ("wandb", "pip install 'clbench[wandb]'"),
}


@dataclass(frozen=True)
class LogSpec:
    """The loggers of a sweep (plain values: sent to worker processes)."""

    kinds: tuple[str, ...]
    #: W&B's mode ("online" / "offline"), resolved once in the driver (:func:`wandb_mode`)
    wandb_mode: str = "offline"


def parse_log(text: str) -> tuple[str, ...]:
    """``"csv,tensorboard"`` -> ``("csv", "tensorboard")``; an unknown name is a ClbenchError
    with a did-you-mean hint."""
    kinds = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not kinds:
        raise ClbenchError(f"--log {text!r}: name a logger: {', '.join(LOGGERS)} "
                           "(comma-separated for several)")
    for k in kinds:
        if k not in LOGGERS:
            raise ClbenchError("--log: " + unknown_name_message("logger", k, list(LOGGERS)))
    return kinds


def check_installed(kinds: tuple[str, ...]) -> None:
    """Import each logger's optional package now, so a missing one is one line naming the pip
    command before any cell runs."""
    for k in kinds:
        module, install = LOGGERS[k]
        if module is None:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise ClbenchError(f"--log {k} needs the {module} package, which is not installed: "
                               f"{install}") from None


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set; else "online" when an API key is configured (``WANDB_API_KEY`` or
    a ``wandb login`` entry in ~/.netrc) and api.wandb.ai answers within 3 s; else "offline"."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    keyed = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"))
    if not keyed:
        return "offline"
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=3).close()
    except OSError:
        return "offline"
    return "online"


def log_spec(text: str) -> LogSpec:
    """The checked :class:`LogSpec` of a ``--log`` value (names known, packages installed)."""
    kinds = parse_log(text)
    check_installed(kinds)
    return LogSpec(kinds, wandb_mode() if "wandb" in kinds else "offline")


def log_dir(result_path: str | Path) -> Path:
    """Where a result's logs go: ``.../seed<k>.json`` -> ``.../seed<k>.logs``."""
    return Path(result_path).with_suffix(".logs")


def logged_metrics() -> list[Any]:
    """Avalanche's metrics a logged run reports: loss per mini-batch, epoch and evaluated
    experience; accuracy per epoch and evaluated experience."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics

    return [*loss_metrics(minibatch=True, epoch=True, experience=True),
            *accuracy_metrics(epoch=True, experience=True)]


def make_loggers(spec: LogSpec, folder: Path, name: str, config: dict[str, Any]) -> list[Any]:
    """One Avalanche logger per chosen kind, each in ``folder/<kind>`` (emptied first). A
    logger that cannot start is a ClbenchError (the sweep stops; no failed result is written)."""
    loggers: list[Any] = []
    for kind in spec.kinds:
        where = folder / kind
        shutil.rmtree(where, ignore_errors=True)  # a re-run replaces its old curves
        where.mkdir(parents=True, exist_ok=True)
        try:
            loggers.append(_logger(kind, where, name, config, spec.wandb_mode))
        except Exception as e:
            close_loggers(loggers)
            raise ClbenchError(f"--log {kind}: the logger did not start ({type(e).__name__}: "
                               f"{e}); drop {kind} from --log") from None
    return loggers


def _logger(kind: str, where: Path, name: str, config: dict[str, Any], mode: str) -> Any:
    # lazy: avalanche.logging imports tensorboard, whose absence check_installed reports
    if kind == "csv":
        from avalanche.logging import CSVLogger
        return CSVLogger(log_folder=str(where))
    if kind == "tensorboard":
        from avalanche.logging import TensorboardLogger
        return TensorboardLogger(tb_log_dir=where)
    from clbench.run.wandb_logger import ScalarWandBLogger
    return ScalarWandBLogger(project_name=os.environ.get("WANDB_PROJECT", "clbench"),
                             run_name=name, dir=str(where), save_code=False, config=config,
                             params={"mode": mode, "id": os.environ.get("WANDB_RUN_ID")
                                     or uuid.uuid4().hex[:12]})


def make_evaluator(spec: LogSpec, folder: Path, name: str,
                   config: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The logged run's EvaluationPlugin (:func:`logged_metrics` into the chosen loggers) and
    the loggers, for :func:`close_loggers` after the run."""
    from avalanche.training.plugins.evaluation import EvaluationPlugin

    loggers = make_loggers(spec, folder, name, config)
    return EvaluationPlugin(*logged_metrics(), loggers=loggers), loggers


def close_loggers(loggers: list[Any]) -> None:
    """Flush and close every logger's files (and finish a W&B run)."""
    for lg in loggers:
        if hasattr(lg, "wandb"):
            lg.wandb.finish()
        elif hasattr(lg, "writer"):
            lg.writer.flush()
            lg.writer.close()
        else:
            lg.close()
