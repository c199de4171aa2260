"""Stage 0 of ``clbench analyze``: a result file with checkpoints -> its stream and models.

    >>> from clbench.analyze.loading import load_run
    >>> run = load_run("results/split-digits/mlp/naive/seed0.json")
    >>> run.after, len(run.models)            # [0, 1, 2, 3, 4], one model per checkpoint

The stream is rebuilt from the result's config (same name, seed and data root unless
``data_root`` is given; with the run's validation hold-out, if it had one) and must have the
fingerprint the result recorded; each model is built
as the runner built it and loads its checkpoint strictly. Task-incremental runs are refused:
their heads grow between checkpoints, so there is no single head to read features with.

**Text runs** (:mod:`clbench.run.text`). The model and the tokenized stream are rebuilt by
:func:`~clbench.run.text.build_text_run` (the run's weights, tokenizer and split; ``.text``
keeps the :class:`~clbench.data.text_stream.TextStream`, ``.stream`` its packed rows) and the
stream's fingerprint is checked as above. Each checkpoint holds the trained part only
(``"partial": "trained part"``): it is loaded by :func:`load_trained_part` onto a
``copy.deepcopy`` of the one rebuilt model, whose copies share the frozen prefix's parameters
and its prefix cache (:meth:`CausalLMModel.__deepcopy__
<clbench.models.lm.CausalLMModel.__deepcopy__>`), so ``T`` checkpoints hold ``T`` trained parts
and one prefix. The models come wrapped in :class:`~clbench.analyze.text.TrainedPartView`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from clbench.analyze.text import TrainedPartView
from clbench.checkpoints import checkpoint_files, load_state
from clbench.data.text_stream import TextStream
from clbench.models.lm import CausalLMModel
from clbench.run.config import RunConfig
from clbench.errors import ClbenchError
from clbench.results import load_result
from clbench.run.runner import build_model
from clbench.run.text import build_text_run
from clbench.streams import STREAMS, Stream, build_stream, holdout


@dataclass
class LoadedRun:
    """A result with its rebuilt stream and one eval-mode model per checkpoint (on the CPU)."""

    path: Path
    data: dict[str, Any]
    config: RunConfig
    stream: Stream
    after: list[int]
    models: list[nn.Module]
    #: the tokenized text stream of a text run (None for an image run)
    text: TextStream | None = None


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
    if STREAMS.get(cfg.stream).obj.kind == "text":
        return _load_text_run(path, data, replace(cfg, data_root=root), files)
    stream = build_stream(cfg.stream, seed=cfg.seed, data_root=root)
    if cfg.train.get("validation", 0.0) > 0:  # as the runner did: its "test" rows are held out
        stream = holdout(stream, cfg.train["validation"], cfg.seed)
    _check_fingerprint(path, data, stream, cfg.stream)
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


def _check_fingerprint(path: Path, data: dict[str, Any], stream: Stream, name: str) -> None:
    if stream.fingerprint != data["stream"]["fingerprint"]:
        raise ClbenchError(f"{path}: stream {name!r} built here has a different data "
                           "fingerprint than the run used; point --data-root at the same data")


def load_trained_part(model: CausalLMModel, state: dict[str, Tensor], file: str | Path) -> None:
    """Load a partial checkpoint ``state`` into ``model``'s trained part, strictly: its names
    must be exactly ``model.trainable_parameter_names()`` with the same shapes; anything else
    is one :class:`ClbenchError` line naming ``file`` and the first name that differs."""
    names = model.trainable_parameter_names()
    missing = [n for n in names if n not in state]
    extra = [n for n in state if n not in set(names)]
    fix = "re-run the cell with --keep-checkpoints --no-resume"
    if missing or extra:
        what = (f"lacks {_some(missing)}" if missing
                else f"holds {_some(extra)} that does not train")
        raise ClbenchError(f"{file}: not the trained part of this model ({len(state)} tensors "
                           f"for {len(names)} trained parameters; it {what}); {fix}")
    params = dict(model.all_named_parameters())
    for n in names:
        if tuple(state[n].shape) != tuple(params[n].shape):
            raise ClbenchError(f"{file}: {n!r} is {tuple(state[n].shape)}, the model's is "
                               f"{tuple(params[n].shape)}; {fix}")
    model.load_state_dict(state, strict=False)


def _some(names: list[str]) -> str:
    return repr(names[0]) + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def _load_text_run(path: Path, data: dict[str, Any], cfg: RunConfig,
                   files: list[tuple[int, Path]]) -> LoadedRun:
    model, ts = build_text_run(cfg)
    _check_fingerprint(path, data, ts.stream, cfg.stream)
    if model.prefix_cache is not None:  # the frozen prefix the runs saved: probe rows skip it
        model.prefix_cache.load_disk()
    models: list[nn.Module] = []
    for j, (_, file) in enumerate(files):
        m = model if j == len(files) - 1 else copy.deepcopy(model)  # the copies share the prefix
        load_trained_part(m, load_state(file), file)
        models.append(TrainedPartView(m).eval())
    return LoadedRun(path, data, cfg, ts.stream, [a for a, _ in files], models, text=ts)
