"""ReLU + L1 sparse autoencoder (Bricken et al. 2023, "Towards Monosemanticity").

    >>> import torch
    >>> from clbench.sae.relu_l1 import ReLUL1SAE, relu_l1_loss
    >>> sae = ReLUL1SAE(d_in=64, n_latents=256)
    >>> x = torch.randn(32, 64)
    >>> x_hat, z, pre = sae(x)                       # [32, 64], [32, 256], [32, 256]
    >>> loss = relu_l1_loss(x_hat, x, z, l1_coeff=1e-3)

Same interface as :class:`clbench.sae.topk.TopKSAE` (``encode``, ``decode``, ``forward``,
``save``/``load``, ``normalize_decoder_``, ``remove_parallel_grad_``, ``steps_since_fired``);
sparsity comes from the L1 penalty instead of a hard ``k``, so ``L0`` varies per sample.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from clbench.sae.topk import SAEBase


def relu_l1_loss(x_hat: Tensor, x: Tensor, z: Tensor, l1_coeff: float,
                 decoder_norms: Tensor | None = None) -> Tensor:
    """``mean_b ||x - x_hat||^2 + l1_coeff * mean_b sum_i |z_i| (* ||W_dec,i||)`` (Bricken et al.).

    ``x_hat``, ``x``: ``[B, d_in]``; ``z``: ``[B, n_latents]``. With ``decoder_norms``
    ``[n_latents]`` each latent's penalty is weighted by its decoder norm (the variant used when
    decoder directions are left free); with unit-norm directions both forms agree. The squared
    error is not normalised, so ``l1_coeff`` depends on the scale of ``x``.
    """
    l1 = z.abs() if decoder_norms is None else z.abs() * decoder_norms
    return (x_hat - x).pow(2).sum(dim=1).mean() + l1_coeff * l1.sum(dim=1).mean()


class ReLUL1SAE(SAEBase):
    """ReLU sparse autoencoder trained with an L1 penalty (Bricken et al. 2023)::

        pre   = W_enc (x - b_pre) + b_enc           [B, n_latents]
        z     = ReLU(pre)                           [B, n_latents]
        x_hat = W_dec z + b_pre                     [B, d_in]

    Unit-norm decoder directions (renormalised after each step) stop the L1 penalty from being
    dodged by shrinking ``z`` and growing ``W_dec``. ``steps_since_fired`` is updated by every
    encode in ``train()`` mode.
    """

    def encode(self, x: Tensor) -> Tensor:
        """``z``: ``[B, d_in]`` -> ``[B, n_latents]``."""
        return self.forward(x)[1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, d_in]`` -> ``(x_hat [B, d_in], z [B, n_latents], pre [B, n_latents])``;
        ``pre`` without graph, as in :meth:`TopKSAE.forward`."""
        pre = self.pre_activations(x)
        z = F.relu(pre)
        if self.training:
            self.mark_fired_((z > 0).any(dim=0))
        return self.decode(z), z, pre.detach()

    def decoder_norms(self) -> Tensor:
        """``||W_dec,i||``: ``[n_latents]``."""
        return self.W_dec.norm(dim=1)

    def loss(self, x: Tensor, l1_coeff: float, weight_by_decoder_norm: bool = False) -> Tensor:
        """:func:`relu_l1_loss` of a forward pass on ``x [B, d_in]``."""
        x_hat, z, _ = self(x)
        norms = self.decoder_norms() if weight_by_decoder_norm else None
        return relu_l1_loss(x_hat, x, z, l1_coeff, norms)

