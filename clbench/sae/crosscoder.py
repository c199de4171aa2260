"""TopK crosscoder: one sparse code shared by several activation sources.

    >>> import torch
    >>> from clbench.sae.crosscoder import TopKCrosscoder
    >>> cc = TopKCrosscoder(d_ins=[128, 64], n_latents=1024, k=16)   # e.g. two layers
    >>> a0, a1 = torch.randn(32, 128), torch.randn(32, 64)
    >>> (a0_hat, a1_hat), f, pre = cc([a0, a1])
    >>> cc.decoder_norms().shape      # where each feature lives
    torch.Size([1024, 2])

A "source" is one ``(layer, checkpoint)`` activation matrix (Masip et al. 2026, "Putting a Face
to Forgetting"; crosscoders as in Lindsey et al. 2024, "Sparse Crosscoders"), with TopK sparsity
and AuxK as in Gao et al. 2024.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from clbench.sae.topk import TopKSAE, normalized_mse


def crosscoder_loss(x_hat: Tensor, x: Tensor, d_ins: Sequence[int]) -> Tensor:
    """``sum_s normalized_mse(x_hat^s, x^s)`` over the sources' column blocks.

    ``x_hat``, ``x``: ``[B, sum(d_ins)]``. Each source counts by its fraction of variance
    unexplained, so a source with large activations does not drown the others.
    """
    parts = zip(x_hat.split(list(d_ins), dim=1), x.split(list(d_ins), dim=1))
    return torch.stack([normalized_mse(h, a) for h, a in parts]).sum()


class TopKCrosscoder(TopKSAE):
    """TopK crosscoder over ``S`` sources of widths ``d_ins = [d_1, ..., d_S]``::

        pre   = sum_s W_enc^s (a^s - b_pre^s) + b_enc   [B, n_latents]
        f     = ReLU(TopK_k(pre))                       [B, n_latents]
        a_hat^s = W_dec^s f + b_pre^s                   [B, d_s]
        loss  = sum_s FVU(a_hat^s, a^s)                 (see :func:`crosscoder_loss`)

    Stacking the sources (``a = [a^1; ...; a^S]``, ``W_enc = [W_enc^1 ... W_enc^S]``) makes
    this exactly a :class:`TopKSAE` of width ``sum(d_ins)``; that is how it is stored, so every
    TopK method (sparse training path, AuxK, save/load) works on the concatenated tensor
    ``[B, sum(d_ins)]``. ``forward`` also takes and returns a list of per-source tensors.

    Decoder norms: ``||W_dec,i^s||`` is feature ``i``'s allocated capacity in source ``s``, the
    quantity the crosscoder is for, so the per-source blocks are *not* forced to unit norm.
    Only the concatenated direction ``[W_dec,i^1; ...; W_dec,i^S]`` is kept at unit norm (which
    removes the scale ambiguity between ``f_i`` and its decoder): ``sum_s ||W_dec,i^s||^2 = 1``.
    """

    def __init__(self, d_ins: Sequence[int], n_latents: int, k: int, *,
                 seed: int | None = None) -> None:
        self.d_ins = [int(d) for d in d_ins]
        super().__init__(sum(self.d_ins), n_latents, k, seed=seed)

    def config(self) -> dict[str, Any]:
        return {"d_ins": list(self.d_ins), "n_latents": self.n_latents, "k": self.k}

    @property
    def n_sources(self) -> int:
        return len(self.d_ins)

    def cat(self, xs: Sequence[Tensor]) -> Tensor:
        """Per-source ``[B, d_s]`` tensors -> ``[B, sum(d_ins)]``."""
        if [x.shape[-1] for x in xs] != self.d_ins:
            raise ValueError(f"source widths {[x.shape[-1] for x in xs]} != d_ins {self.d_ins}")
        return torch.cat(list(xs), dim=-1)

    def split(self, x: Tensor) -> list[Tensor]:
        """``[B, sum(d_ins)]`` -> per-source ``[B, d_s]`` views."""
        return list(x.split(self.d_ins, dim=-1))

    def recon_loss(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return crosscoder_loss(x_hat, x, self.d_ins)

    def decoder_norms(self) -> Tensor:
        """``||W_dec,i^s||``: ``[n_latents, S]`` (rows have unit Euclidean norm)."""
        return torch.stack([w.norm(dim=1) for w in self.W_dec.detach().split(self.d_ins, 1)], 1)

    def encode(self, x: Tensor | Sequence[Tensor]) -> Tensor:
        """``f``: ``[B, sum(d_ins)]`` or a list of ``[B, d_s]`` -> ``[B, n_latents]``."""
        return super().encode(x if isinstance(x, Tensor) else self.cat(x))

    def forward(  # type: ignore[override]
        self, x: Tensor | Sequence[Tensor]
    ) -> tuple[Tensor | list[Tensor], Tensor, Tensor]:
        """``x``: ``[B, sum(d_ins)]`` or a list of ``[B, d_s]`` -> ``(x_hat, f, pre)``.

        ``x_hat`` comes back in the form ``x`` came in; ``f``, ``pre``: ``[B, n_latents]``.
        """
        as_list = not isinstance(x, Tensor)
        x_hat, f, pre = super().forward(self.cat(x) if as_list else x)  # type: ignore[arg-type]
        return (self.split(x_hat) if as_list else x_hat), f, pre
