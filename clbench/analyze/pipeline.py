"""``clbench analyze RUN``: the stages in order, the files written, the result joined.

    >>> from clbench.analyze import AnalyzeSettings, CrosscoderSettings, analyze
    >>> block = analyze("results/split-digits/mlp/naive/seed0.json",
    ...                 AnalyzeSettings(crosscoder=CrosscoderSettings(steps=500)))
    >>> block["summary"]["ff_frac_first_exp_capacity_halved"], block["flags"]
    >>> null = analyze("results/split-digits/mlp/naive/seed0.json", AnalyzeSettings(null=True))

Stages: :mod:`~clbench.analyze.loading` (result + checkpoints -> models) ->
:mod:`~clbench.analyze.probe` -> :mod:`~clbench.analyze.sources` (activations per layer and
checkpoint) -> :mod:`~clbench.analyze.fit` (the crosscoder) -> :mod:`~clbench.analyze.measures`
-> :mod:`~clbench.analyze.report`. Written into ``out`` (default ``<result dir>/seed<k>.analysis``):
``feature_forgetting.json``, ``crosscoder.pt``, ``report.html`` and its PNGs. The result file
gets a ``feature_forgetting`` block (summary, settings, counts, the run's ``flags``, paths
relative to the result's folder) and the summary metrics in ``metrics``, so
``clbench rank --metric ff_...`` ranks strategies on them. Every file is written atomically.

**Held-out rows.** A seeded, balanced ``heldout`` fraction of the probe
(:func:`~clbench.analyze.probe.heldout_split`) is kept out of the crosscoder's training; its
FVU there is ``ff_crosscoder_fvu_heldout``, beside the in-sample ``ff_crosscoder_fvu``.

**Null model** (``null=True``, ``clbench analyze RUN --null``). Every checkpoint is replaced by
the first (the model after experience 0, repeated ``T`` times, the head too), so nothing
changes between checkpoints and every true retention is 1 and every readout drop 0. What
the measures read then (capacity halved, readout drop, persistence, ...) comes from the
crosscoder's fit alone: the level below which a real run's number says nothing. It goes to
``<result dir>/seed<k>.analysis_null`` and the result's ``feature_forgetting_null`` block; the
real block and the ``ff_*`` entries of ``metrics`` are left as they are.

**Text runs** (``clbench run --stream text-v1 ... --keep-checkpoints``): the probe is each
task's gold test rows, a row's class is its task, the layers are the trained part's, the
head-input layer is ``norm`` and readout goes through the unembedding onto each task's answer
tokens; the report shows top rows as decoded text. See :mod:`clbench.analyze.text`.

**Flags.** The run's ``flags`` (:mod:`clbench.metrics.flags`, e.g. ``collapsed:exp4``) are
copied into the block and shown at the top of the report: a collapsed network's capacities
measure the collapse, not forgetting. ``None`` where the result file predates flags.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from clbench.analyze.fit import CrosscoderSettings, fit_crosscoder, partial_pre, shared_codes
from clbench.analyze.loading import load_run
from clbench.analyze.measures import FeatureMeasures, feature_measures
from clbench.analyze.probe import heldout_split, probe_set
from clbench.analyze.report import flags_text, write_report
from clbench.analyze.sources import collect_sources, head_input_layer, pick_layers
from clbench.analyze.text import TEXT_HEAD_LAYER, answer_token_heads, row_texts, task_probe_set
from clbench.errors import ClbenchError
from clbench.metrics.registry import metric
from clbench.results import load_result, validate, write_json_atomic


@dataclass(frozen=True)
class AnalyzeSettings:
    """What ``clbench analyze`` does; ``layers=None`` picks the default layers."""

    layers: list[str] | None = None
    probe_size: int = 4000
    top: int = 8
    images: int = 8
    device: str = "cpu"
    crosscoder: CrosscoderSettings = field(default_factory=CrosscoderSettings)
    #: fraction of probe rows held out of the crosscoder's fit (its FVU is measured there)
    heldout: float = 0.2
    #: analyze the null model: the first checkpoint repeated (see the module docstring)
    null: bool = False

    def __post_init__(self) -> None:
        for name in ("probe_size", "top", "images"):
            if getattr(self, name) < 1:
                raise ClbenchError(f"--{name.replace('_', '-')} {getattr(self, name)}: "
                                   "must be at least 1")
        if not 0.0 <= self.heldout < 1.0:
            raise ClbenchError(f"--heldout {self.heldout}: must be in [0, 1)")
        check_device(self.device)

    @property
    def block(self) -> str:
        """The result's key for this analysis: ``feature_forgetting`` or ``..._null``."""
        return "feature_forgetting_null" if self.null else "feature_forgetting"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crosscoder": self.crosscoder.to_dict()}


def check_device(device: str) -> torch.device:
    """``device`` as a torch device; a ClbenchError if it is malformed or not present."""
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise ClbenchError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if d.type not in ("cpu", "cuda"):
        raise ClbenchError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ClbenchError(f"--device {device}: no CUDA GPU is visible here; use --device cpu")
    return d


def default_out(result_json: str | Path, null: bool = False) -> Path:
    """``<dir>/seed<k>.json`` -> ``<dir>/seed<k>.analysis`` (``.analysis_null``: null model)."""
    p = Path(result_json)
    return p.with_name(p.stem + (".analysis_null" if null else ".analysis"))


def _top_rows(cc: Any, sources: Any, top: list[int], n_images: int) -> dict[int, list[list[int]]]:
    """Per top feature, per checkpoint: the probe rows with the largest partial pre-activation."""
    rows: dict[int, list[list[int]]] = {i: [] for i in top}
    for t in range(sources.n_ckpts):
        pre = partial_pre(cc, sources, t, top)                 # [N, len(top)]
        idx = pre.topk(min(n_images, pre.shape[0]), dim=0).indices  # [n, len(top)]
        for j, i in enumerate(top):
            rows[i].append(idx[:, j].tolist())
    return rows


def _heads(models: list[torch.nn.Module]) -> torch.Tensor | None:
    """``[T, C, d]`` head weights per checkpoint (the head reads ``forward_features``)."""
    heads = [getattr(m, "head", None) for m in models]
    if any(not isinstance(h, torch.nn.Linear) for h in heads):
        return None
    return torch.stack([h.weight.detach().float().cpu() for h in heads])


def _top_detail(fm: FeatureMeasures, top: list[int]) -> list[dict[str, Any]]:
    rho, pers, moved, drop = fm.retention, fm.persistence, fm.moved_to_middle, fm.readout_drop
    return [{"feature": i, "serves": int(fm.serves[i]), "reference_checkpoint": int(fm.ref[i]),
             "mean_activation": float(fm.activation[i]), "capacity": fm.capacity[i].tolist(),
             "readout": None if fm.readout is None else fm.readout[i].tolist(),
             "retention": float(rho[i]), "persistence": float(pers[i]),
             "readout_drop": None if drop is None else float(drop[i]),
             "moved_to_middle": bool(moved[i])} for i in top]


def run_title(data: dict[str, Any]) -> str:
    """``stream / model / label, seed k`` of a result file's ``config`` (no path)."""
    c = data.get("config", {})
    return (f"{c.get('stream', '?')} / {c.get('model', '?')} / "
            f"{data.get('label') or c.get('strategy', '?')}, seed {c.get('seed', '?')}")


def _info(path: Path, data: dict[str, Any], block: dict[str, Any], n_probe: int,
          out_dir: Path) -> dict[str, Any]:
    """The report's "Analysis" table, read off the block. The result file is named relative to
    ``out_dir`` (the report's folder), never by an absolute or temporary path."""
    cc, st = block["crosscoder"], block["settings"]
    return {"run": run_title(data),
            "result file": os.path.relpath(path.resolve(), out_dir.resolve()),
            "run flags": flags_text(block["flags"]),
            "model": ("NULL MODEL: the exp0 checkpoint repeated at every checkpoint"
                      if block["null"] else "the run's checkpoints"),
            "layers": ", ".join(st["layers"]), "head-input layer": st["head_layer"] or "none",
            "checkpoints": ", ".join(f"exp{a}" for a in block["checkpoints"]),
            "probe rows": n_probe, "crosscoder fit rows": cc["n_fit_rows"],
            "held-out rows": cc["n_heldout_rows"], "crosscoder latents": cc["n_latents"],
            "crosscoder FVU (fit rows)": cc["fvu"],
            "crosscoder FVU (held-out rows)": cc["fvu_heldout"], "crosscoder L0": cc["l0"],
            **{k: v for k, v in block["counts"].items() if not isinstance(v, list)}}


def analyze(result_json: str | Path, settings: AnalyzeSettings, out: str | Path | None = None,
            data_root: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Analyze one run (its null model with ``settings.null``); returns the block joined into
    its result as ``settings.block``."""
    path = Path(result_json)
    run = load_run(path, data_root)
    models = [run.models[0]] * len(run.models) if settings.null else run.models
    flags = run.data.get("flags")
    seed = settings.crosscoder.seed
    if run.text is not None:   # a language model on text tasks (clbench.analyze.text)
        probe = task_probe_set(run.stream, settings.probe_size, seed)
        head = TEXT_HEAD_LAYER if TEXT_HEAD_LAYER in models[-1].hook_layers else None
        class_names, texts = run.text.task_names, row_texts(probe, models[0].lm.tokenizer)
    else:
        probe = probe_set(run.stream, settings.probe_size, seed)
        head = head_input_layer(models[-1], probe.x)
        class_names, texts = run.stream.class_names, None
    fit_rows, held_rows = heldout_split(probe, settings.heldout, seed)
    layers = pick_layers(models[-1], settings.layers, head)
    sources = collect_sources(models, run.after, layers, probe.x, head, settings.device,
                              progress=progress, scale_rows=fit_rows)
    cc, cc_stats = fit_crosscoder(sources.subset(fit_rows), settings.crosscoder,
                                  settings.device, progress, heldout=sources.subset(held_rows))
    codes = shared_codes(cc, sources)
    heads = None if not head else (answer_token_heads(models, run.text) if run.text is not None
                                   else _heads(models))
    fm = feature_measures(cc, sources, codes, probe, heads,
                          crosscoder_fvu=cc_stats["fvu"],
                          crosscoder_fvu_heldout=cc_stats["fvu_heldout"])
    summary = fm.summary()
    top = fm.top_features(settings.top)
    out_dir = Path(out) if out is not None else default_out(path, settings.null)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    block = {
        "summary": summary,
        "flags": flags,
        "null": settings.null,
        "settings": {**settings.to_dict(), "layers": layers, "head_layer": head},
        "counts": fm.counts(),
        "crosscoder": cc_stats,
        "capacity_by_experience": fm.capacity_by_experience(),
        "checkpoints": run.after,
        "analysis_dir": os.path.relpath(out_dir.resolve(), base),
        # the crosscoder's fit differs in its last bits with the thread count, and so does
        # which feature crosses a threshold: a re-analysis must use the same count
        "determinism": {"torch_num_threads": torch.get_num_threads()},
    }
    report = write_report(out_dir, fm, top, _top_rows(cc, sources, top, settings.images), probe,
                          summary, _info(path, run.data, block, len(probe), out_dir),
                          flags=flags, null=settings.null, class_names=class_names,
                          texts=texts)
    block["report"] = os.path.relpath(report.resolve(), base)
    _save_crosscoder(cc, out_dir / "crosscoder.pt")
    write_json_atomic(out_dir / "feature_forgetting.json",
                      {**block, "top_features": _top_detail(fm, top)})
    join_into_result(path, block, settings.block)
    return block


def join_into_result(path: Path, block: dict[str, Any], key: str = "feature_forgetting") -> None:
    """Add ``block`` as ``key``; for ``feature_forgetting`` (not the null model's block) also
    its summary to ``metrics``. Re-validated, written atomically (the file is re-read first,
    so other fields stay as they are now)."""
    data = load_result(path)
    data[key] = block
    if key == "feature_forgetting":
        for name, value in block["summary"].items():
            data["metrics"][name] = metric(name).entry(value)
    validate(data, source=str(path))
    write_json_atomic(path, data)


def _save_crosscoder(cc: Any, path: Path) -> None:
    cc.save(path)  # atomic: SAEBase.save goes through clbench.atomic
