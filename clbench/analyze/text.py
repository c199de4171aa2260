"""``clbench analyze`` on a text run: the trained part of a language model, task by task.

    $ clbench run --stream text-v1 --model smollm2-135m --strategy naive --seeds 0 \\
          --keep-checkpoints --results runs/
    $ clbench analyze runs/text-v1/smollm2-135m/naive/seed0.json --layers block28,block29,norm
    >>> view = TrainedPartView(model)            # what sources.capture reads
    >>> list(view.hook_layers)                   # ['block28', 'block29', 'norm']
    >>> probe = task_probe_set(stream, size=600, seed=0)      # probe.y is the task
    >>> heads = answer_token_heads(models, ts)               # [T, n_tasks, d]

A text run (:mod:`clbench.run.text`) trains the top blocks of a causal LM
(:class:`~clbench.models.lm.CausalLMModel`) on 6 tasks; its checkpoints hold that trained part
only (:mod:`clbench.checkpoints`). The analysis maps the image pipeline onto it so:

* **Models.** :class:`TrainedPartView` shows one checkpoint's model with the hook layers of its
  trained part (``block<train_start>`` .. ``block<n-1>``, ``norm``; a frozen layer is the same
  at every checkpoint) and computes features through the run's prefix cache, so the frozen
  prefix runs once per probe row for all checkpoints and layers. Each hook layer is pooled by
  the model's own pool: the mean over the row's real tokens.
* **Probe rows** (:func:`task_probe_set`): each task's test rows as the runner packs them, the
  prompt followed by its gold answer and EOS (:mod:`clbench.data.text_stream`). For a
  generation task that is the row it scores; for a multiple-choice task, which the runner
  scores by each choice's likelihood, it is the row of the correct choice, the text a model
  that knows the task continues the prompt with. A row's "class" and "experience" are both
  its task: groups are tasks, sampled equally (``size // n_tasks`` rows each, seeded).
* **Readout** (:func:`answer_token_heads`). The head reads the final norm's output ``x``
  (layer ``norm``, the head-input layer) through the unembedding ``W_U [V, d]``: the logit of
  token ``v`` is ``W_U[v] . x``. A task's "head row" is the mean unembedding row of the tokens
  its training answers are made of (EOS left out: every answer ends with it),
  ``h_e = sum_v p_e(v) W_U[v]`` with ``p_e(v)`` the share of token ``v`` among task ``e``'s
  answer tokens, so ``h_e . x`` is the mean logit of those tokens. The readout of
  :mod:`clbench.analyze.measures` then is, with one "class" per task,
  ``r_i^t = cos(d_i^(norm,t), h_(e_i) - mean_e h_e)``: how much feature ``i``'s direction in
  the head input raises the logits of its own task's answer tokens over the average task's.
  With ``train_blocks`` below all, ``W_U`` is frozen (it is tied to the embedding), so a change
  of readout is the feature's direction turning away from (or towards) its task's answers.
  (A head over the full vocabulary would have ``V`` = 49,152 rows, most unrelated to any
  task; the answer tokens are what the run's loss trains the model to emit.)
* **Report.** Text rows have no image: the top rows of a feature are shown as decoded text
  (:func:`row_texts`), titled by task.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from clbench.analyze.probe import Probe
from clbench.data.text_stream import IGNORE, TextStream
from clbench.errors import ClbenchError
from clbench.models.lm import CausalLMModel
from clbench.streams import Stream

#: the head-input layer of a language model: the final norm's output, what the unembedding reads
TEXT_HEAD_LAYER = "norm"
#: a decoded probe row shown in the report keeps at most this many characters (its end)
TEXT_CHARS = 200


class TrainedPartView(nn.Module):
    """``model`` as the analysis sees it: hook layers of the trained part only, pooled by the
    model's pools, and ``forward_features`` through ``model.prefix_cache`` (when it has one)."""

    def __init__(self, model: CausalLMModel) -> None:
        super().__init__()
        self.lm = model
        self.name = model.name
        self.hook_layers = {n: f"lm.{model.hook_layers[n]}" for n in model.trained_layers()}
        self.pools = {n: model.pools[n] for n in self.hook_layers}

    @property
    def head(self) -> nn.Module:
        """The unembedding (``W_U``: ``head.weight [V, d]``)."""
        return self.lm.head

    def token_mask(self) -> Tensor | None:
        return self.lm.token_mask()

    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, T, d]`` final-norm output of packed rows ``x [B, >=2, T]``."""
        return self.lm.forward_features(x, prefix_cache=self.lm.prefix_cache)

    def forward(self, x: Tensor) -> Tensor:
        return self.lm(x)


def task_probe_set(stream: Stream, size: int, seed: int) -> Probe:
    """About ``size`` test rows of a text stream, ``size // n_tasks`` of each task (all where a
    task has fewer), drawn without replacement by a generator seeded with ``seed``, ordered by
    task then row; ``y`` and ``experience`` are the task (module docstring)."""
    E = stream.n_experiences
    if size < E:
        raise ClbenchError(f"--probe-size {size} is below one row per task of {stream.name} "
                           f"({E}); use --probe-size {E} or more")
    g = torch.Generator().manual_seed(seed)
    rows, exps = [], []
    for e in range(E):
        idx = stream.test_idx[e]
        rows.append(idx[torch.randperm(len(idx), generator=g)[:size // E]].sort().values)
        exps.append(torch.full((len(rows[-1]),), e, dtype=torch.long))
    r, exp = torch.cat(rows), torch.cat(exps)
    return Probe(x=stream.x_test[r], y=exp, experience=exp, rows=r, n_experiences=E,
                 n_classes=E, classes_per_exp=[[e] for e in range(E)])


def answer_token_weights(ts: TextStream, vocab: int, eos: int | None) -> Tensor:
    """``p_e(v)``: ``[n_tasks, vocab]``, each row the share of each token among task ``e``'s
    training answer tokens (EOS left out; all of them when nothing else is left)."""
    s = ts.stream
    out = torch.zeros(s.n_experiences, vocab)
    for e, idx in enumerate(s.train_idx):
        y = s.y_train[idx]
        tokens = y[(y != IGNORE) & (y != (-1 if eos is None else eos))]
        if tokens.numel() == 0:
            tokens = y[y != IGNORE]
        if tokens.numel() == 0 or int(tokens.max()) >= vocab:
            raise ClbenchError(f"task {ts.task_names[e]!r} has no answer tokens inside the "
                               f"model's vocabulary of {vocab}; re-run the cell")
        out[e] = torch.bincount(tokens, minlength=vocab).float() / tokens.numel()
    return out


@torch.no_grad()
def answer_token_heads(models: list[Any], ts: TextStream) -> Tensor:
    """``h_e^t = sum_v p_e(v) W_U^t[v]``: ``[T, n_tasks, d]``, one task "head row" per
    checkpoint's unembedding (module docstring)."""
    w_u = [m.head.weight.detach().float().cpu() for m in models]
    eos = getattr(models[0].lm.tokenizer, "eos_token_id", None)
    p = answer_token_weights(ts, int(w_u[0].shape[0]), eos)
    return torch.stack([p @ w for w in w_u])


def row_texts(probe: Probe, tokenizer: Any, chars: int = TEXT_CHARS) -> list[str]:
    """Each probe row's real tokens decoded (its last ``chars`` characters, ``…`` before a cut)."""
    out = []
    for x in probe.x:
        text = tokenizer.decode(x[0][x[1].bool()].tolist())
        out.append(text if len(text) <= chars else "…" + text[-chars:])
    return out
