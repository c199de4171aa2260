"""``clbench analyze RUN``: the stages in order, the files written, the result joined.

    >>> from clbench.analyze import AnalyzeSettings, analyze
    >>> block = analyze("results/split-digits/mlp/naive/seed0.json", AnalyzeSettings(steps=500))
    >>> block["summary"]["ff_frac_first_exp_capacity_halved"]

Stages: :mod:`~clbench.analyze.loading` (result + checkpoints -> models) ->
:mod:`~clbench.analyze.probe` -> :mod:`~clbench.analyze.sources` (activations per layer and
checkpoint) -> :mod:`~clbench.analyze.fit` (the crosscoder) -> :mod:`~clbench.analyze.measures`
-> :mod:`~clbench.analyze.report`. Written into ``out`` (default ``<result dir>/seed<k>.analysis``):
``feature_forgetting.json``, ``crosscoder.pt``, ``report.html`` and its PNGs. The result file
gets a ``feature_forgetting`` block (summary, settings, counts, paths relative to the result's
folder) and the summary metrics in ``metrics``, so ``clbench rank --metric ff_...`` ranks
strategies on them. Every file is written atomically.
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
from clbench.analyze.probe import probe_set
from clbench.analyze.report import write_report
from clbench.analyze.sources import collect_sources, head_input_layer, pick_layers
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

    def __post_init__(self) -> None:
        for name in ("probe_size", "top", "images"):
            if getattr(self, name) < 1:
                raise ClbenchError(f"--{name.replace('_', '-')} {getattr(self, name)}: "
                                   "must be at least 1")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def default_out(result_json: str | Path) -> Path:
    """``<dir>/seed<k>.json`` -> ``<dir>/seed<k>.analysis``."""
    p = Path(result_json)
    return p.with_name(p.stem + ".analysis")


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


def analyze(result_json: str | Path, settings: AnalyzeSettings, out: str | Path | None = None,
            data_root: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Analyze one run; returns the ``feature_forgetting`` block joined into its result."""
    path = Path(result_json)
    run = load_run(path, data_root)
    probe = probe_set(run.stream, settings.probe_size, settings.crosscoder.seed)
    head = head_input_layer(run.models[-1], probe.x)
    layers = pick_layers(run.models[-1], settings.layers, head)
    sources = collect_sources(run.models, run.after, layers, probe.x, head, settings.device,
                              progress=progress)
    cc, cc_stats = fit_crosscoder(sources, settings.crosscoder, settings.device, progress)
    codes = shared_codes(cc, sources)
    fm = feature_measures(cc, sources, codes, probe, _heads(run.models) if head else None,
                          crosscoder_fvu=cc_stats["fvu"])
    summary = fm.summary()
    top = fm.top_features(settings.top)
    out_dir = Path(out) if out is not None else default_out(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    info = {"run": str(path), "layers": ", ".join(layers), "head-input layer": head or "none",
            "checkpoints": ", ".join(f"exp{a}" for a in run.after), "probe rows": len(probe),
            "crosscoder latents": cc_stats["n_latents"], "crosscoder FVU": cc_stats["fvu"],
            "crosscoder L0": cc_stats["l0"], **{k: v for k, v in fm.counts().items()
                                                 if not isinstance(v, list)}}
    report = write_report(out_dir, fm, top, _top_rows(cc, sources, top, settings.images), probe,
                          summary, info)
    _save_crosscoder(cc, out_dir / "crosscoder.pt")
    block = {
        "summary": summary,
        "settings": {**settings.to_dict(), "layers": layers, "head_layer": head},
        "counts": fm.counts(),
        "crosscoder": cc_stats,
        "capacity_by_experience": fm.capacity_by_experience(),
        "checkpoints": run.after,
        "analysis_dir": os.path.relpath(out_dir.resolve(), base),
        "report": os.path.relpath(report.resolve(), base),
    }
    write_json_atomic(out_dir / "feature_forgetting.json",
                      {**block, "top_features": _top_detail(fm, top)})
    join_into_result(path, block)
    return block


def join_into_result(path: Path, block: dict[str, Any]) -> None:
    """Add ``block`` as ``feature_forgetting`` and its summary to ``metrics``; re-validated,
    written atomically (the file is re-read first, so other fields stay as they are now)."""
    data = load_result(path)
    data["feature_forgetting"] = block
    for name, value in block["summary"].items():
        data["metrics"][name] = metric(name).entry(value)
    validate(data, source=str(path))
    write_json_atomic(path, data)


def _save_crosscoder(cc: Any, path: Path) -> None:
    cc.save(path)  # atomic: SAEBase.save goes through clbench.atomic
