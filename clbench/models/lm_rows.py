"""One Llama decoder block evaluated at chosen token positions only.

    out = block_at(layer, hidden, attention_mask, rows, cols, rope)   # [N, d]

is ``layer(hidden)[rows, cols]`` (up to float rounding) for a block of the ``transformers`` Llama
family, computed without the positions nobody reads. With ``x = RMSNorm_1(h)``:

    k_s, v_s = RoPE(W_k x_s, s), W_v x_s                    at every real position s of the row
    q_n      = RoPE(W_q x_{b_n c_n}, c_n)                   at the N chosen positions only
    a_n      = softmax_{s <= c_n, s real}(q_n . k_s / sqrt(d_h)) v_s   (grouped-query heads)
    u_n      = h_{b_n c_n} + W_o a_n
    out_n    = u_n + MLP(RMSNorm_2(u_n))

(Touvron et al. 2023, "LLaMA", arXiv 2302.13971: pre-norm, RoPE, SwiGLU MLP; Ainslie et al. 2023,
arXiv 2305.13245: grouped-query attention). Keys and values must cover the whole row (every
query reads them); the query, output projection, second norm and MLP, about 94% of a SmolLM2
block's multiply-adds per token (d 576, 192-wide keys and values, MLP 1536), run on the N chosen positions only. The last block of a
multiple-choice forward is read at its answer positions alone, so a pass that re-runs only the
top of the model (sae-reg's ablate guide, :meth:`clbench.models.lm.CausalLMModel.resume_from`)
costs the keys and values of that block instead of the whole block.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of ``x [..., H, d_h]`` with ``cos``, ``sin`` ``[..., d_h]`` (one per
    position), by the Llama code's own ``rotate_half``."""
    from transformers.models.llama.modeling_llama import rotate_half

    return x * cos.unsqueeze(-2) + rotate_half(x) * sin.unsqueeze(-2)


def block_at(layer: nn.Module, hidden: Tensor, attention_mask: Tensor, rows: Tensor, cols: Tensor,
             rope: tuple[Tensor, Tensor]) -> Tensor:
    """Decoder block ``layer``'s output at positions ``(rows[n], cols[n])`` of ``hidden [B, T, d]``
    -> ``[N, d]``: causal attention over each row's real tokens (``attention_mask [B, T]``),
    ``rope = (cos, sin)`` ``[B, T, d_h]`` as the model's rotary embedding gives them."""
    attn = layer.self_attn
    hd = attn.head_dim
    b, t, _ = hidden.shape
    x = layer.input_layernorm(hidden)
    cos, sin = rope
    k = _rope(attn.k_proj(x).view(b, t, -1, hd), cos, sin)          # [B, T, Hkv, d_h]
    v = attn.v_proj(x).view(b, t, -1, hd)
    n_kv = k.shape[2]
    q = attn.q_proj(x[rows, cols]).view(len(rows), -1, hd)         # [N, H, d_h]
    q = _rope(q, cos[rows, cols], sin[rows, cols])
    q = q.view(len(rows), n_kv, -1, hd)                             # [N, Hkv, G, d_h]
    kr, vr = k[rows], v[rows]                                       # [N, T, Hkv, d_h]
    scores = torch.einsum("nkgd,ntkd->nkgt", q, kr) * attn.scaling
    pos = torch.arange(t, device=hidden.device)
    allowed = (pos.unsqueeze(0) <= cols.unsqueeze(1)) & attention_mask[rows].bool()   # [N, T]
    scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
    # at least fp32 (a half-precision model's scores overflow), never below the model's dtype
    p = torch.softmax(scores, dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
    a = torch.einsum("nkgt,ntkd->nkgd", p, vr).reshape(len(rows), -1)
    u = hidden[rows, cols] + attn.o_proj(a)
    return u + layer.mlp(layer.post_attention_layernorm(u))
