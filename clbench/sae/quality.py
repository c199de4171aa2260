"""The quality figures every SAE report carries (Gao et al. 2024, section 4; SAEBench).

    >>> import torch
    >>> from clbench.sae.topk import TopKSAE
    >>> from clbench.sae.quality import sae_quality
    >>> sae_quality(TopKSAE(d_in=64, n_latents=256, k=8), torch.randn(1000, 64))  # held-out x
    {'fvu': ..., 'explained_variance': ..., 'l0': 8.0, 'dead_fraction': ..., 'dense_fraction': ...}

- ``fvu``: fraction of variance unexplained over the whole of ``x``,
  ``sum (x_hat - x)^2 / sum (x - mean(x))^2``; ``explained_variance = 1 - fvu``.
- ``l0``: mean number of non-zero latents per sample.
- ``dead_fraction``: fraction of latents that fire on no sample of ``x``.
- ``dense_fraction``: fraction of latents that fire on more than 10% of the samples.
- crosscoders add ``fvu_source{s}``, each source's own FVU.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from clbench.metrics.registry import directions
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.topk import SAEBase

#: name -> higher_is_better (``l0``: lower is sparser, the usual preference at equal FVU); a
#: view of the registry's ``sae`` group, whose result names carry an ``sae_`` prefix
QUALITY_METRICS: dict[str, bool] = directions("sae", "sae_")

DENSE_THRESHOLD = 0.1


@torch.no_grad()
def sae_quality(sae: SAEBase, x: Tensor | Sequence[Tensor],
                batch_size: int = 4096) -> dict[str, float]:
    """Quality of ``sae`` on ``x [N, d_in]`` (a crosscoder also takes its list of sources).

    Runs in eval mode (the caller's mode is restored), so ``steps_since_fired`` is untouched.
    """
    if not isinstance(x, Tensor):
        if not isinstance(sae, TopKCrosscoder):
            raise TypeError("a list of sources needs a TopKCrosscoder")
        x = sae.cat(x)
    was_training = sae.training
    sae.eval()
    n = x.shape[0]
    mean = x.mean(dim=0)
    widths = sae.d_ins if isinstance(sae, TopKCrosscoder) else [x.shape[1]]
    sse = torch.zeros(len(widths), dtype=torch.float64)
    sst = torch.zeros(len(widths), dtype=torch.float64)
    fires = torch.zeros(sae.n_latents, dtype=torch.float64)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        x_hat, z, _ = sae(xb)
        sse += torch.stack([e.pow(2).sum() for e in (x_hat - xb).split(widths, 1)]).double().cpu()
        sst += torch.stack([c.pow(2).sum() for c in (xb - mean).split(widths, 1)]).double().cpu()
        fires += (z > 0).sum(dim=0).double().cpu()
    sae.train(was_training)
    fvu = float(sse.sum() / sst.sum())
    out = {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "l0": float(fires.sum() / n),
        "dead_fraction": float((fires == 0).double().mean()),
        "dense_fraction": float((fires / n > DENSE_THRESHOLD).double().mean()),
    }
    if len(widths) > 1:
        out.update({f"fvu_source{s}": float(sse[s] / sst[s]) for s in range(len(widths))})
    return out
