"""Multiple-choice scoring with the prompt computed once per example, not once per choice.

    scores = shared_prompt_scores(model, rows.x, rows.y, offsets)   # [N], one per choice row
    # equal (up to float rounding) to answer_scores(model(rows.x), rows.y)

A choice task's test set is one packed row per (example, choice) (:class:`~clbench.data.
text_stream.ChoiceRows`): the example's prompt tokens ``P`` (length ``c``) followed by choice
``j``'s tokens ``a_j`` (length ``m_j``). Scored row by row, the trained blocks see the prompt
``k`` times for ``k`` choices, and the prompt is most of each row. Here each example is one
*merged* sequence ``P a_1 a_2 ... a_k`` run once through the trained blocks, with

- position ids ``0..c-1`` for ``P`` and ``c..c+m_j-1`` for every ``a_j`` (each choice starts
  where the prompt ends, as in its own row), so the rotary embedding is the row's;
- an attention mask in which a prompt token attends to the prompt causally and a token of
  ``a_j`` attends to the whole prompt and causally to ``a_j``, never to another choice.

Every query then attends to exactly the keys, at exactly the positions, of its own row, so the
hidden state of each token (and ``log p(a_j | P)``) equals the row-by-row one; the input of the
first trained block is taken from the frozen prefix's states of each row (the prompt's from the
example's first row: the frozen blocks are causal, so they agree on the prompt). Cost:
``c + sum_j m_j`` tokens per example instead of ``k c + sum_j m_j``. Falls back to row-by-row
scoring when the rows of an example do not share their prompt tokens (a row truncated from
the left) or the model's attention is not ``sdpa``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from clbench.models.lm import CausalLMModel

IGNORE = -100


def _row_scores(model: CausalLMModel, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    from clbench.data.text_stream import answer_scores

    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        out.append(answer_scores(logits, y[i:i + batch_size].to(logits.device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _prefix_states(model: CausalLMModel, ids: Tensor, mask: Tensor) -> Tensor:
    """The residual stream entering the first trained block ``[B, T, d]``."""
    if model.prefix_cache is not None:
        return model.prefix_cache.lookup(ids, mask)
    return model.embed_prefix(ids, mask)


@torch.no_grad()
def shared_prompt_scores(model: CausalLMModel, x: Tensor, y: Tensor, offsets: list[int],
                         batch_size: int = 32) -> Tensor:
    """``sum_t log p(a_t | P, a_<t)`` of every choice row ``[N]`` (see the module docstring).

    ``x [N, 3, T]`` packed rows (ids, mask, predict mask), ``y [N, A]`` their answer ids;
    example ``i``'s choices are rows ``offsets[i]:offsets[i+1]``; ``batch_size`` bounds the
    merged sequences run at once."""
    attn = getattr(model.lm.config, "_attn_implementation", "sdpa")
    device = next(model.lm.parameters()).device
    n_real = x[:, 1].sum(dim=1)
    n_ans = (y != IGNORE).sum(dim=1)
    groups = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        c = int(n_real[a] - n_ans[a])
        same = all(int(n_real[r] - n_ans[r]) == c and torch.equal(x[r, 0, :c], x[a, 0, :c])
                   for r in range(a, b))
        if not same or attn != "sdpa" or c < 1:
            return _row_scores(model, x, y, batch_size)
        groups.append((a, b, c))
    scores = torch.zeros(len(x))
    for start in range(0, len(groups), batch_size):
        part = groups[start:start + batch_size]
        for (a, b, _), s in zip(part, _merged_scores(model, x, y, part, device)):
            scores[a:b] = s
    return scores


def _merged_scores(model: CausalLMModel, x: Tensor, y: Tensor,
                   groups: list[tuple[int, int, int]], device: torch.device) -> list[Tensor]:
    rows = torch.arange(groups[0][0], groups[-1][1])
    width = int(x[rows, 1].sum(dim=1).max())
    ids, mask = x[rows, 0, :width].to(device), x[rows, 1, :width].to(device)
    states = _prefix_states(model, ids, mask)                        # [R, width, d]
    first = groups[0][0]
    lengths = [c + int((y[a:b] != IGNORE).sum()) for a, b, c in groups]
    L, d = max(lengths), states.shape[-1]
    hidden = states.new_zeros(len(groups), L, d)
    pos = torch.zeros(len(groups), L, dtype=torch.long, device=device)
    seg = torch.full((len(groups), L), -2, dtype=torch.long, device=device)   # -2: padding
    spans: list[list[tuple[int, int, int]]] = []   # per example: (row, start, length) of a_j
    for g, (a, b, c) in enumerate(groups):
        hidden[g, :c] = states[a - first, :c]
        pos[g, :c] = torch.arange(c, device=device)
        seg[g, :c] = -1                                              # -1: the prompt
        at, mine = c, []
        for j, r in enumerate(range(a, b)):
            m = int((y[r] != IGNORE).sum())
            hidden[g, at:at + m] = states[r - first, c:c + m]
            pos[g, at:at + m] = torch.arange(c, c + m, device=device)
            seg[g, at:at + m] = j
            mine.append((r, at, m))
            at += m
        spans.append(mine)
    q, k = seg.unsqueeze(2), seg.unsqueeze(1)                         # [G, L, 1], [G, 1, L]
    order = torch.arange(L, device=device)
    causal = order.view(1, 1, L) <= order.view(1, L, 1)
    allowed = ((k == -1) | (k == q)) & (q != -2) & (k != -2) & causal
    allowed |= torch.eye(L, dtype=torch.bool, device=device).unsqueeze(0)   # no empty row
    out = model.run_blocks(hidden, None, model.train_start, model.n_layers,
                           position_ids=pos, mask4d=allowed.unsqueeze(1))
    out = model.lm.model.norm(out)
    results = []
    for g, (a, b, c) in enumerate(groups):
        s = torch.zeros(b - a)
        for j, (r, at, m) in enumerate(spans[g]):
            where = torch.tensor([c - 1, *range(at, at + m - 1)], device=device)
            logp = torch.log_softmax(model.forward_head(out[g, where]).float(), dim=-1)
            target = y[r, :m].to(device)
            s[j] = float(logp.gather(1, target.unsqueeze(1)).sum())
        results.append(s)
    return results
