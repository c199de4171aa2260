"""Stage 0 of ``clbench analyze``: a result file with checkpoints -> its stream and models.

    >>> from clbench.analyze.loading import load_run
    >>> run = load_run("results/split-digits/mlp/naive/seed0.json")
    >>> run.after, len(run.models)            # [0, 1, 2, 3, 4], one model per checkpoint

The stream is rebuilt from the result's config (same name, seed and data root unless
``data_root`` is given; with the run's validation hold-out, if it had one) and must have the
fingerprint the result recorded; each model is built
as the runner built it and loads its checkpoint strictly. Task-incremental runs are refused:
their heads grow between checkpoints, so there is no single head to read features with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from clbench.checkpoints import checkpoint_files, load_state
from clbench.run.config import RunConfig
from clbench.errors import ClbenchError
from clbench.results import load_result
from clbench.run.runner import build_model
from clbench.streams import Stream, build_stream, holdout


@dataclass
class LoadedRun:
    """A result with its rebuilt stream and one eval-mode model per checkpoint (on the CPU)."""

    path: Path
    data: dict[str, Any]
    config: RunConfig
    stream: Stream
    after: list[int]
    models: list[nn.Module]


def load_run(path: str | Path, data_root: str | None = None) -> LoadedRun:
    """Load result ``path`` and its checkpoints; a :class:`ClbenchError` says what is missing."""
    path = Path(path)
    data = load_result(path)
    if data["status"] != "ok":
        raise ClbenchError(f"{path}: the run failed ({str(data.get('error')).splitlines()[0]}); "
                           "only a finished run can be analyzed")
    files = checkpoint_files(path, data)
    if len(files) < 2:
        raise ClbenchError(f"{path}: {len(files)} checkpoint(s); feature forgetting needs at "
                           "least 2 (offline methods such as 'joint' train once)")
    cfg = RunConfig.from_dict(data["config"])
    if cfg.task_incremental:
        raise ClbenchError(f"{path}: a task-incremental run has one head per task; "
                           "clbench analyze needs a single-head (class- or domain-incremental) run")
    root = data_root if data_root is not None else cfg.data_root
    stream = build_stream(cfg.stream, seed=cfg.seed, data_root=root)
    if cfg.train.get("validation", 0.0) > 0:  # as the runner did: its "test" rows are held out
        stream = holdout(stream, cfg.train["validation"], cfg.seed)
    if stream.fingerprint != data["stream"]["fingerprint"]:
        raise ClbenchError(f"{path}: stream {cfg.stream!r} built here has a different data "
                           "fingerprint than the run used; point --data-root at the same data")
    models = []
    for _, file in files:
        model = build_model(cfg, stream)
        try:
            model.load_state_dict(load_state(file))
        except RuntimeError as e:
            raise ClbenchError(f"{file}: does not fit model {cfg.model!r} "
                               f"({str(e).splitlines()[0]}); re-run the cell") from None
        models.append(model.eval())
    return LoadedRun(path, data, cfg, stream, [a for a, _ in files], models)
