"""Stage 3 of ``clbench analyze``: one TopK crosscoder over all (layer, checkpoint) sources.

    >>> from clbench.analyze.fit import CrosscoderSettings, fit_crosscoder
    >>> cc, stats = fit_crosscoder(sources.subset(fit), CrosscoderSettings(expansion=4, k=32),
    ...                            heldout=sources.subset(held))
    >>> cc.decoder_norms().shape             # [n_latents, L * T]
    >>> stats["fvu"], stats["fvu_heldout"], stats["fvu_by_source"]["fc2@exp4"]

The crosscoder (:class:`~clbench.sae.crosscoder.TopKCrosscoder`, trained by
:func:`~clbench.sae.train.train_crosscoder`) has ``expansion * max_s d_s`` latents and one code
``f = ReLU(TopK_k(sum_s W_enc^s (a^s - b_pre^s) + b_enc))`` shared by all sources; its loss is
the sum of the sources' FVUs (Masip et al. 2026; Lindsey et al. 2024). It is trained on the
fit rows of the probe's (normalised) activations. Its FVU,
``sum_s ||x_hat^s - x^s||^2 / sum_s ||x^s - mean(x^s)||^2`` (the mean over the rows measured),
is reported on those rows (``fvu``, in-sample) and on the held-out probe rows it never saw
(``fvu_heldout``), so a reader can judge how much of each source the features explain, and
whether they explain the model or memorise the probe: a held-out FVU far above the in-sample
one is a crosscoder fitted to its rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from clbench.analyze.sources import Sources
from clbench.errors import ClbenchError
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.quality import sae_quality
from clbench.sae.train import SAETrainConfig, train_crosscoder


@dataclass(frozen=True)
class CrosscoderSettings:
    """Dictionary size ``expansion * max_s d_s``; ``k`` active latents; Adam for ``steps`` of
    ``batch_size`` rows at ``lr``; ``seed`` fixes the initialisation and the batches; ``k_aux``
    the dead latents AuxK reads per row (None: half the summed source widths, Gao et al. 2024's
    ``d / 2`` with ``d`` the concatenated input, capped by the dead count).

    ``k_aux`` is a cost as well as a fit setting: AuxK decodes ``k_aux`` latents into every
    source, so a step costs about ``B (k + k_aux) sum_s d_s``. For the MLP's small layers the
    default is cheap; for a language model's (18 sources of 576: ``d / 2`` = 5184, i.e. every
    dead latent) a step with 1504 of 2304 latents dead costs 6.4x the step at ``k_aux`` 128
    (10.7 s against 1.67 s, one thread, side by side: ``python ci/bench_auxk.py``)."""

    expansion: int = 4
    k: int = 32
    steps: int = 1000
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0
    k_aux: int | None = None

    def __post_init__(self) -> None:
        for name in ("expansion", "k", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ClbenchError(f"--{name.replace('_', '-')} {getattr(self, name)}: "
                                   "must be at least 1")
        if not self.lr > 0:
            raise ClbenchError(f"--lr {self.lr}: must be positive")
        if self.k_aux is not None and self.k_aux < 1:
            raise ClbenchError(f"--k-aux {self.k_aux}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored in the block; ``k_aux`` only when set, so that analyses made
        at the default compare equal to those made before the setting existed."""
        out = asdict(self)
        if out["k_aux"] is None:
            del out["k_aux"]
        return out


def fit_crosscoder(sources: Sources, settings: CrosscoderSettings, device: str = "cpu",
                   progress: bool = False, heldout: Sources | None = None
                   ) -> tuple[TopKCrosscoder, dict[str, Any]]:
    """Train the crosscoder on ``sources`` (on ``device``); returns it on the CPU, in eval
    mode, with ``stats``: ``fvu``, ``fvu_by_source`` (source name -> FVU), ``l0``,
    ``dead_fraction`` (all on ``sources``), ``fvu_heldout`` and ``fvu_by_source_heldout`` (on
    ``heldout``; None without held-out rows), ``n_fit_rows``, ``n_heldout_rows``,
    ``n_latents``, ``train_seconds``."""
    n_latents = settings.expansion * max(sources.widths)
    if settings.k > n_latents:
        raise ClbenchError(f"--k {settings.k} exceeds the dictionary size {n_latents}; "
                           "lower --k or raise --expansion")
    n = sources.acts[0].shape[0]
    cfg = SAETrainConfig(n_latents=n_latents, k=settings.k, lr=settings.lr,
                         batch_size=min(settings.batch_size, n), steps=settings.steps,
                         seed=settings.seed, dead_steps=min(256, max(1, settings.steps // 4)),
                         k_aux=settings.k_aux)
    xs = [a.to(device) for a in sources.acts]
    cc, train_stats = train_crosscoder(xs, cfg, progress=progress)
    cc = cc.cpu().eval()
    q = sae_quality(cc, [a.cpu() for a in sources.acts])
    held = heldout is not None and heldout.acts[0].shape[0] >= 2
    fvu_h, by_source_h = crosscoder_fvu(cc, heldout) if held else (None, None)
    return cc, {
        "fvu": q["fvu"],
        "fvu_by_source": _by_source(q, sources),
        "fvu_heldout": fvu_h,
        "fvu_by_source_heldout": by_source_h,
        "n_fit_rows": n,
        "n_heldout_rows": int(heldout.acts[0].shape[0]) if heldout is not None else 0,
        "l0": q["l0"],
        "dead_fraction": q["dead_fraction"],
        "n_latents": n_latents,
        "train_seconds": train_stats["train_seconds"],
        "final_loss": train_stats["final_loss"],
    }


def _by_source(q: dict[str, float], sources: Sources) -> dict[str, float]:
    return {sources.name(s): q.get(f"fvu_source{s}", q["fvu"]) for s in range(len(sources.acts))}


def crosscoder_fvu(cc: TopKCrosscoder, sources: Sources) -> tuple[float, dict[str, float]]:
    """The crosscoder's FVU on ``sources`` (any rows, e.g. held-out ones) and per source."""
    q = sae_quality(cc, [a.cpu() for a in sources.acts])
    return q["fvu"], _by_source(q, sources)


@torch.no_grad()
def shared_codes(cc: TopKCrosscoder, sources: Sources, batch_size: int = 2048) -> torch.Tensor:
    """The shared code ``f`` of every probe row: ``[N, n_latents]``."""
    x = cc.cat(sources.acts)
    return torch.cat([cc.encode(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def partial_pre(cc: TopKCrosscoder, sources: Sources, ckpt: int,
                features: list[int]) -> torch.Tensor:
    """Checkpoint ``ckpt``'s share of the encoder pre-activation of ``features``:
    ``sum_l W_enc,i^(l,ckpt) (a^(l,ckpt) - b_pre^(l,ckpt))``, ``[N, len(features)]``.

    It is the feature detector applied to that one model's activations, used to show which
    probe inputs drive a feature at each checkpoint.
    """
    w_enc = cc.W_enc[features].split(cc.d_ins, dim=1)
    b_pre = cc.b_pre.split(cc.d_ins)
    out = torch.zeros(sources.acts[0].shape[0], len(features))
    for l in range(sources.n_layers):
        s = sources.index(l, ckpt)
        out += (sources.acts[s] - b_pre[s]) @ w_enc[s].T
    return out
