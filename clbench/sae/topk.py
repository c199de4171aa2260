"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    >>> import torch
    >>> from clbench.sae.topk import TopKSAE, normalized_mse
    >>> sae = TopKSAE(d_in=256, n_latents=2048, k=32)
    >>> x = torch.randn(64, 256)
    >>> sae.init_b_pre(x)
    >>> x_hat, z, pre = sae(x)           # [64, 256], [64, 2048] (32 non-zeros a row), [64, 2048]
    >>> loss = normalized_mse(x_hat, x)  # fraction of variance unexplained
    >>> sae.save("sae.pt"); TopKSAE.load("sae.pt").n_latents
    2048

Storage convention: ``W_enc`` and ``W_dec`` are both ``[n_latents, d_in]``; row ``i`` of
``W_dec`` is latent ``i``'s decoder direction, i.e. column ``i`` of the ``W_dec`` in the formulas.

Training never forms the dense ``[B, n_latents]`` gradient: the top-k indices are picked without
autograd, and the gradients of the ``k`` kept pre-activations and of the sparse decoder are
sparse-times-dense products done with ``embedding_bag`` (see :func:`sparse_t_dense`). Only the
encoder forward is a dense matmul. The same path serves ``encode`` and ``forward``, and it gives a
gradient with respect to ``x`` when ``x`` requires one (for losses on a model's activations).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.atomic import write_atomic
from clbench.errors import ClbenchError


#: AuxK loss coefficient of Gao et al. 2024.
AUXK_COEFF = 1.0 / 32

_SAE = TypeVar("_SAE", bound="SAEBase")


# ---------------------------------------------------------------- losses (pure functions)


def normalized_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Fraction of variance unexplained: ``sum (x_hat - x)^2 / sum (x - mean_batch(x))^2``.

    ``x_hat``, ``x``: ``[B, D]``. 0 is perfect, 1 is as good as predicting the batch mean.
    NaN for a batch with no variance (e.g. ``B == 1``).
    """
    return (x_hat - x).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum()


def auxk_loss(
    aux_hat: Tensor,
    residual: Tensor,
    coeff: float = AUXK_COEFF,
    loss: Callable[[Tensor, Tensor], Tensor] = normalized_mse,
) -> Tensor:
    """AuxK loss (Gao et al. 2024): ``coeff * loss(aux_hat, residual)``.

    ``residual = x - x_hat`` (treated as a constant), ``aux_hat = W_dec z_aux`` without bias,
    ``z_aux = ReLU(TopK_{k_aux}(pre restricted to dead latents))``: see :func:`dead_topk`. The
    loss hands the dead latents a gradient toward the error the live ones leave, which revives
    them.
    """
    return coeff * loss(aux_hat, residual.detach())


def dead_topk(pre: Tensor, dead: Tensor, k_aux: int) -> tuple[Tensor, Tensor]:
    """Top-``k_aux`` raw pre-activations among the ``dead`` latents.

    ``pre``: ``[B, m]`` (no graph needed), ``dead``: bool ``[m]``. ``k_aux`` is capped by the
    number of dead latents. Returns values and indices ``[B, min(k_aux, n_dead)]``.
    """
    k_aux = min(k_aux, int(dead.sum()))
    return pre.masked_fill(~dead, -math.inf).topk(k_aux, dim=-1, sorted=False)


# ---------------------------------------------------------------- sparse kernels


def sparse_t_dense(idx: Tensor, vals: Tensor, dense: Tensor, n_rows: int) -> Tensor:
    """``S^T @ dense`` for the sparse ``S [B, n_rows]`` with ``S[b, idx[b, j]] = vals[b, j]``.

    ``idx``, ``vals``: ``[B, k]``; ``dense``: ``[B, D]``; returns ``[n_rows, D]``. Entries are
    sorted by row, then each output row is a weighted bag of ``dense`` rows (``embedding_bag``):
    ``2 B k D`` flops instead of the dense ``2 B n_rows D``.
    """
    flat = idx.reshape(-1)
    order = flat.argsort()
    counts = torch.bincount(flat, minlength=n_rows)
    offsets = torch.zeros(n_rows, dtype=torch.long, device=idx.device)
    offsets[1:] = counts.cumsum(0)[:-1]
    rows = torch.div(order, idx.shape[1], rounding_mode="floor")
    weights = vals.reshape(-1)[order].to(dense.dtype)
    return F.embedding_bag(rows, dense, offsets, mode="sum", per_sample_weights=weights)


class _SelectedPre(torch.autograd.Function):
    """``pre[b, idx[b, j]]`` given its value; sparse backward to ``x``, ``W_enc``, biases."""

    @staticmethod
    def forward(ctx: Any, vals: Tensor, idx: Tensor, x: Tensor, w_enc: Tensor,
                b_enc: Tensor, b_pre: Tensor) -> Tensor:
        ctx.save_for_backward(idx, x, w_enc, b_pre)
        return vals.clone()

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        idx, x, w_enc, b_pre = ctx.saved_tensors
        m = w_enc.shape[0]
        grad_b = torch.zeros(m, dtype=g.dtype, device=g.device).index_add_(
            0, idx.reshape(-1), g.reshape(-1))
        grad_x = grad_w = None
        if ctx.needs_input_grad[2]:
            grad_x = F.embedding_bag(idx, w_enc, mode="sum", per_sample_weights=g)
        if ctx.needs_input_grad[3]:  # sum g (x - b_pre)^T = S^T x - grad_b b_pre^T
            grad_w = sparse_t_dense(idx, g, x, m) - grad_b[:, None] * b_pre[None, :]
        grad_b_pre = -(grad_b @ w_enc) if ctx.needs_input_grad[5] else None
        return None, None, grad_x, grad_w, grad_b, grad_b_pre


class _SparseDecode(torch.autograd.Function):
    """``out[b] = sum_j vals[b, j] W[idx[b, j]]`` with a sparse backward for ``W``."""

    @staticmethod
    def forward(ctx: Any, vals: Tensor, idx: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(vals, idx, w)
        return F.embedding_bag(idx, w, mode="sum", per_sample_weights=vals)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        vals, idx, w = ctx.saved_tensors
        grad_vals = grad_w = None
        if ctx.needs_input_grad[0]:  # <g[b], W[idx[b, j]]>: embedding_bag's own fast kernel
            with torch.enable_grad():
                v = vals.detach().requires_grad_()
                out = F.embedding_bag(idx, w.detach(), mode="sum", per_sample_weights=v)
                (grad_vals,) = torch.autograd.grad(out, v, g)
        if ctx.needs_input_grad[2]:
            grad_w = sparse_t_dense(idx, vals, g, w.shape[0])
        return grad_vals, None, grad_w


# ---------------------------------------------------------------- modules


class TopK(nn.Module):
    """Activation ``z = ReLU(TopK_k(pre))``: keep each row's ``k`` largest entries, zero the rest.

    ``pre``: ``[B, m]`` -> ``z``: ``[B, m]`` with at most ``k`` non-zeros a row.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def select(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """Raw values and indices of the ``k`` largest entries, each ``[B, k]`` (no ReLU)."""
        return pre.topk(self.k, dim=-1, sorted=False)

    def forward(self, pre: Tensor) -> Tensor:
        vals, idx = self.select(pre)
        return torch.zeros_like(pre).scatter(-1, idx, F.relu(vals))


class SparseCode(NamedTuple):
    """A batch's codes in sparse form. ``vals``/``idx``: ``[B, k]`` (``vals`` >= 0, with graph);
    ``pre``: ``[B, m]`` pre-activations (no graph); ``aux_vals``/``aux_idx``: AuxK selection
    ``[B, k_aux]`` among dead latents, or ``None``."""

    vals: Tensor
    idx: Tensor
    pre: Tensor
    aux_vals: Tensor | None = None
    aux_idx: Tensor | None = None


class SAEBase(nn.Module):
    """Parameters and bookkeeping every clbench dictionary shares.

    ``W_enc``, ``W_dec``: ``[n_latents, d_in]``; ``b_enc``: ``[n_latents]``; ``b_pre``: ``[d_in]``.
    The decoder starts as the encoder's transpose with unit-norm directions. The buffer
    ``steps_since_fired`` ``[n_latents]`` (long) counts training steps since each latent last
    fired; subclasses update it in ``train()`` mode, like BatchNorm's running statistics, so it
    is saved with the model.
    """

    steps_since_fired: Tensor

    #: a method that keeps a dictionary has it counted as ``sae`` state (:mod:`clbench.run.cost`)
    __clbench_state_kind__ = "sae"

    def __init__(self, d_in: int, n_latents: int, *, seed: int | None = None) -> None:
        super().__init__()
        if d_in < 1 or n_latents < 1:
            raise ClbenchError(f"SAE sizes must be positive, got d_in={d_in}, "
                               f"n_latents={n_latents}")
        self.d_in, self.n_latents = d_in, n_latents
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        w = torch.empty(n_latents, d_in)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)  # nn.Linear's default
        self.W_enc = nn.Parameter(w)
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.W_dec = nn.Parameter(w.clone())
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("steps_since_fired", torch.zeros(n_latents, dtype=torch.long))
        self.normalize_decoder_()

    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``type(self)(**self.config())`` rebuilds the architecture."""
        return {"d_in": self.d_in, "n_latents": self.n_latents}

    def pre_activations(self, x: Tensor) -> Tensor:
        """``W_enc (x - b_pre) + b_enc``: ``[B, d_in]`` -> ``[B, n_latents]``.

        Computed as ``x W_enc^T + (b_enc - W_enc b_pre)`` so ``b_pre``'s gradient never needs a
        ``[B, d_in]`` intermediate.
        """
        return torch.addmm(self.b_enc - self.W_enc @ self.b_pre, x, self.W_enc.t())

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``z``: ``[B, d_in]`` -> ``[B, n_latents]``."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """``x_hat = W_dec z + b_pre``: ``[B, n_latents]`` -> ``[B, d_in]``."""
        return torch.addmm(self.b_pre, z, self.W_dec)

    @torch.no_grad()
    def init_b_pre(self, x: Tensor, method: str = "median", iters: int = 8) -> None:
        """Set ``b_pre`` to the geometric median (``iters`` Weiszfeld steps from the mean) or the
        mean of a sample ``x [N, d_in]``."""
        if method not in ("median", "mean"):
            raise ClbenchError(f"unknown b_pre init {method!r}; known: median, mean")
        x = x.to(self.b_pre)
        y = x.mean(dim=0)
        for _ in range(iters if method == "median" else 0):
            w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
            y = (w[:, None] * x).sum(dim=0) / w.sum()
        self.b_pre.copy_(y)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder direction (row of ``W_dec``) to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Project each decoder direction's gradient onto that direction's orthogonal complement.

        With unit-norm directions the parallel component would only change their length, which
        :meth:`normalize_decoder_` undoes; removing it keeps Adam's statistics meaningful.
        """
        g, w = self.W_dec.grad, self.W_dec
        if g is not None:
            g.sub_(((g * w).sum(dim=1, keepdim=True) / w.pow(2).sum(dim=1, keepdim=True)) * w)

    @torch.no_grad()
    def mark_fired_(self, fired: Tensor) -> None:
        """One training step: ``steps_since_fired`` += 1, reset to 0 where ``fired`` [m] is True."""
        self.steps_since_fired.add_(1).masked_fill_(fired, 0)

    def dead_mask(self, dead_steps: int) -> Tensor:
        """Latents that have not fired for ``dead_steps`` training steps: bool ``[n_latents]``."""
        return self.steps_since_fired >= dead_steps

    def recon_loss(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """The reconstruction loss training minimises (FVU here)."""
        return normalized_mse(x_hat, x)

    def save(self, path: str | Path) -> None:
        """Write ``{"kind", "config", "state_dict"}`` of plain tensors and values, atomically."""
        state = {"kind": type(self).__name__, "config": self.config(),
                 "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
        write_atomic(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls: type[_SAE], path: str | Path) -> _SAE:
        """Rebuild a model written by :meth:`save` (``torch.load(weights_only=True)``), on the CPU
        and in eval mode."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("kind") != cls.__name__:
            raise ClbenchError(f"{path} holds a {blob.get('kind')!r}, not a {cls.__name__!r}")
        model = cls(**blob["config"])
        model.load_state_dict(blob["state_dict"])
        return model.eval()


class TopKSAE(SAEBase):
    """TopK sparse autoencoder (Gao et al. 2024)::

        pre   = W_enc (x - b_pre) + b_enc           [B, n_latents]
        z     = ReLU(TopK_k(pre))                   [B, n_latents], <= k non-zeros a row
        x_hat = W_dec z + b_pre                     [B, d_in]

    Decoder directions are kept at unit norm (:meth:`normalize_decoder_` after each step,
    :meth:`remove_parallel_grad_` before it). ``steps_since_fired`` is updated by every encode
    in ``train()`` mode; a latent with ``vals > 0`` in the batch has fired.
    """

    def __init__(self, d_in: int, n_latents: int, k: int, *, seed: int | None = None) -> None:
        if not 1 <= k <= n_latents:
            raise ClbenchError(f"TopK SAE needs 1 <= k <= n_latents, got k={k}, "
                               f"n_latents={n_latents}")
        super().__init__(d_in, n_latents, seed=seed)
        self.k = k
        self.activation = TopK(k)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k": self.k}

    def _selected(self, vals: Tensor, idx: Tensor, x: Tensor) -> Tensor:
        return F.relu(_SelectedPre.apply(vals, idx, x, self.W_enc, self.b_enc, self.b_pre))

    def encode_sparse(self, x: Tensor, dead_steps: int | None = None,
                      k_aux: int | None = None) -> SparseCode:
        """Sparse codes of ``x [B, d_in]``; with ``dead_steps``, also the AuxK selection.

        ``k_aux`` defaults to ``d_in // 2`` and is capped by the number of dead latents.
        """
        with torch.no_grad():
            pre = self.pre_activations(x)
            vals, idx = self.activation.select(pre)
        code = self._selected(vals, idx, x)
        if self.training:
            fired = torch.zeros(self.n_latents, dtype=torch.bool, device=x.device)
            self.mark_fired_(fired.index_fill_(0, idx[code > 0], True))
        if dead_steps is None:
            return SparseCode(code, idx, pre)
        dead = self.dead_mask(dead_steps)
        if not bool(dead.any()):
            return SparseCode(code, idx, pre)
        aux_vals, aux_idx = dead_topk(pre, dead, self.d_in // 2 if k_aux is None else k_aux)
        return SparseCode(code, idx, pre, self._selected(aux_vals, aux_idx, x), aux_idx)

    def decode_sparse(self, vals: Tensor, idx: Tensor, bias: bool = True) -> Tensor:
        """``sum_j vals[b, j] W_dec[idx[b, j]] (+ b_pre)``: ``[B, k]`` x2 -> ``[B, d_in]``."""
        out = _SparseDecode.apply(vals, idx, self.W_dec)
        return out + self.b_pre if bias else out

    def encode(self, x: Tensor) -> Tensor:
        """``z``: ``[B, d_in]`` -> ``[B, n_latents]``."""
        code = self.encode_sparse(x)
        return torch.zeros_like(code.pre).scatter(-1, code.idx, code.vals)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, d_in]`` -> ``(x_hat [B, d_in], z [B, n_latents], pre [B, n_latents])``.

        ``x_hat`` and ``z`` carry the autograd graph (to the parameters and to ``x``); ``pre``
        does not.
        """
        code = self.encode_sparse(x)
        z = torch.zeros_like(code.pre).scatter(-1, code.idx, code.vals)
        return self.decode_sparse(code.vals, code.idx), z, code.pre
