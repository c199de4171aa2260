"""``text-v1`` for one tokenizer: a :class:`~clbench.streams.Stream` of packed token rows.

    >>> v1 = build_text_v1(seed=0)
    >>> ts = tokenize_text_v1(v1, tokenizer, max_len=128)
    >>> ts.stream.x_train.shape, ts.stream.y_train.shape      # [N, 3, T], [N, A]
    >>> ts.choice_rows[3].x.shape                              # supersense: every (example, choice)

The stream's tokens depend on the model's tokenizer, so the runner tokenizes the (tokenizer-free)
:class:`~clbench.data.text_tasks.TextV1` once the model is loaded.

**Packed rows.** Example ``prompt`` / ``answer`` becomes ``prompt + ANSWER_SEPARATOR + answer``
(+ EOS for training rows), split into context and answer tokens as lm-evaluation-harness does
(:func:`clbench.models.lm_score.encode_pair`). Row ``x[i]`` is ``[3, T]``: token ids (right
padded), the attention mask, and the *predict mask*, 1 at each position followed by an answer
token. ``y[i]`` is ``[A]``: the answer's token ids in order, ``-100`` after them. A model's packed
forward (:meth:`clbench.models.lm.CausalLMModel.answer_logits`) returns ``[B, V, A]`` next-token
logits at the predict positions, so the plain cross-entropy of Avalanche's strategies is the mean
answer-token loss (the prompt is never a target). A sequence longer than ``max_len`` loses prompt
tokens from the left; an answer alone longer than ``max_len - 1`` is a :class:`DataError`.

**Test rows.** ``x_test``/``y_test`` hold each task's test examples with their gold answer and
EOS (the rows the runner scores): for a ``generate`` task an example is correct when greedy
decoding would produce the answer's tokens and then stop (see :func:`greedy_match`); for a
``choice`` task, :attr:`TextStream.choice_rows` holds one row per (example, choice), without
EOS, scored by the choice's summed log-likelihood (lm-evaluation-harness's ``acc``).

**Classes.** ``classes_per_exp[e]`` are the token ids that occur in task ``e``'s training answers
and ``n_classes`` is the vocabulary size: Avalanche's LwF distils over the previously seen
"classes", here the old tasks' answer tokens. The dataset ``targets`` (what class-balanced
memories balance, GDumb's and DER's) are the task numbers, so those memories are balanced over
tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from clbench.data.base import sha256_of
from clbench.data.text_tasks import ANSWER_SEPARATOR, TextV1
from clbench.errors import DataError
from clbench.streams import Stream

IGNORE = -100
TEXT_STREAM_VERSION = "1"
"""Bump with any change of the packing below (it enters the stream's version)."""


@dataclass(frozen=True)
class PackedRows:
    """``x [N, 3, T]`` (ids, attention mask, predict mask) and ``y [N, A]`` answer ids."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class ChoiceRows:
    """A ``choice`` task's test set as rows: example ``i``'s choices are rows
    ``offsets[i]:offsets[i+1]`` of ``rows``; ``gold[i]`` the index of its answer."""

    rows: PackedRows
    offsets: list[int]
    gold: Tensor


@dataclass(frozen=True)
class TextStream:
    """The tokenized stream, with what the runner needs to score it."""

    stream: Stream
    v1: TextV1
    kinds: list[str]                      #: each task's kind, "generate" or "choice"
    task_names: list[str]
    choice_rows: list[ChoiceRows | None]  #: per task; None for generate tasks
    tokens_train: int                     #: real tokens in the training rows


def encode_rows(tokenizer: Any, pairs: Sequence[tuple[str, str]], *, eos: bool,
                max_len: int) -> list[tuple[list[int], int]]:
    """Each ``(prompt, answer)`` as ``(ids, n_answer)``: context then answer tokens."""
    from clbench.models.lm_score import encode_pair

    out = []
    eos_id = tokenizer.eos_token_id
    for prompt, answer in pairs:
        ctx, ans = encode_pair(tokenizer, prompt, ANSWER_SEPARATOR + answer)
        if eos and eos_id is not None:
            ans = ans + [int(eos_id)]
        if not ans:
            raise DataError(f"answer {answer!r} has no tokens")
        if len(ans) > max_len - 1:
            raise DataError(f"answer {answer!r} is {len(ans)} tokens, more than max_len - 1 = "
                            f"{max_len - 1}; raise stream.max_len")
        seq = (ctx + ans)[-max_len:]
        out.append((seq, len(ans)))
    return out


def pack(encoded: Sequence[tuple[list[int], int]], pad_id: int, width: int,
         answer_width: int) -> PackedRows:
    """Rows of :func:`encode_rows` as :class:`PackedRows` of ``T = width``, ``A = answer_width``."""
    x = torch.zeros((len(encoded), 3, width), dtype=torch.long)
    x[:, 0] = pad_id
    y = torch.full((len(encoded), answer_width), IGNORE, dtype=torch.long)
    for i, (seq, n_ans) in enumerate(encoded):
        n = len(seq)
        x[i, 0, :n] = torch.tensor(seq)
        x[i, 1, :n] = 1
        x[i, 2, n - n_ans - 1: n - 1] = 1   # position t predicts token t + 1
        y[i, :n_ans] = torch.tensor(seq[n - n_ans:])
    return PackedRows(x, y)


def tokenize_text_v1(v1: TextV1, tokenizer: Any, *, max_len: int = 128,
                     tokenizer_id: str = "") -> TextStream:
    """The packed stream of ``v1`` for ``tokenizer`` (``tokenizer_id`` enters the fingerprint)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad = int(pad or 0)
    train = [encode_rows(tokenizer, [(e.prompt, e.answer) for e in t.train], eos=True,
                         max_len=max_len) for t in v1.tasks]
    test = [encode_rows(tokenizer, [(e.prompt, e.answer) for e in t.test], eos=True,
                        max_len=max_len) for t in v1.tasks]
    choice_enc: list[list[tuple[list[int], int]] | None] = []
    for t in v1.tasks:
        if t.kind != "choice":
            choice_enc.append(None)
            continue
        pairs = [(e.prompt, c) for e in t.test for c in e.choices]
        choice_enc.append(encode_rows(tokenizer, pairs, eos=False, max_len=max_len))
    every = [r for part in (*train, *test, *(c for c in choice_enc if c)) for r in part]
    width = max(len(s) for s, _ in every)
    answer_width = max(n for _, n in every)

    def stack(parts: list[list[tuple[list[int], int]]]) -> tuple[Tensor, Tensor, list[Tensor]]:
        rows = pack([r for p in parts for r in p], pad, width, answer_width)
        starts = torch.tensor([0] + [len(p) for p in parts]).cumsum(0)
        idx = [torch.arange(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        return rows.x, rows.y, idx

    x_tr, y_tr, tr_idx = stack(train)
    x_te, y_te, te_idx = stack(test)
    choice_rows: list[ChoiceRows | None] = []
    for t, enc in zip(v1.tasks, choice_enc):
        if enc is None:
            choice_rows.append(None)
            continue
        sizes = [len(e.choices) for e in t.test]
        offsets = torch.tensor([0] + sizes).cumsum(0).tolist()
        gold = torch.tensor([e.choices.index(e.answer) for e in t.test])
        choice_rows.append(ChoiceRows(pack(enc, pad, width, answer_width), offsets, gold))
    classes = [sorted(set(y_tr[idx][y_tr[idx] != IGNORE].tolist())) for idx in tr_idx]
    fp = sha256_of(v1.fingerprint.encode(), tokenizer_id.encode(),
                   repr((TEXT_STREAM_VERSION, max_len, ANSWER_SEPARATOR)).encode())
    stream = Stream(
        name="text-v1", version=f"{v1.version}/pack{TEXT_STREAM_VERSION}", scenario="instruction-il",
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, train_idx=tr_idx, test_idx=te_idx,
        classes_per_exp=classes, n_classes=int(len(tokenizer)), fingerprint=fp, seed=-1,
        targets_train=torch.cat([torch.full((len(i),), e) for e, i in enumerate(tr_idx)]),
        targets_test=torch.cat([torch.full((len(i),), e) for e, i in enumerate(te_idx)]))
    return TextStream(stream, v1, [t.kind for t in v1.tasks], [t.name for t in v1.tasks],
                      choice_rows, tokens_train=int(x_tr[:, 1].sum()))


def boundary_tokens(tokenizer: Any) -> Tensor:
    """``[V]`` bool: tokens that end a generated word (EOS, special tokens, and tokens whose text
    starts with neither a letter nor a digit): after the answer's tokens, greedy decoding that
    emits one of these has produced exactly the answer."""
    vocab = int(len(tokenizer))
    out = torch.zeros(vocab, dtype=torch.bool)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i in range(vocab):
        text = tokenizer.decode([i]) if i not in special else ""
        out[i] = i in special or not text or not text[0].isalnum()
    return out


def greedy_match(logits: Tensor, y: Tensor, boundary: Tensor) -> Tensor:
    """Per row ``[B]`` bool: greedy decoding reproduces the answer and then stops.

    ``logits [B, V, A]`` from a packed forward of test rows whose targets ``y [B, A]`` are the
    answer's tokens followed by EOS. Greedy decoding emits ``argmax`` at each step; it produces
    the answer's tokens exactly when the argmax at every answer slot is the answer's token given
    the gold prefix (teacher forcing equals greedy decoding while they agree), and it then stops
    at a word boundary when the argmax at the last slot (where EOS is the target) is a
    :func:`boundary_tokens` token. This is greedy exact match at the token level, without
    generating: no normalisation of case or punctuation."""
    pred = logits.argmax(dim=1)                             # [B, A]
    real = y != IGNORE
    last = real.long().cumsum(dim=1).argmax(dim=1)           # slot of the final target (EOS)
    hit = (pred == y) | ~real
    rows = torch.arange(len(y))
    hit[rows, last] = boundary.to(pred.device)[pred[rows, last]]
    return hit.all(dim=1)


def answer_scores(logits: Tensor, y: Tensor) -> Tensor:
    """Summed log-likelihood of each row's answer ``[B]`` (``logits [B, V, A]``, ``y [B, A]``)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    score = logp.gather(1, y.clamp(min=0).unsqueeze(1)).squeeze(1)
    return (score * (y != IGNORE)).sum(dim=1)


def choice_predictions(scores: Tensor, offsets: list[int]) -> Tensor:
    """Index of the best choice per example: the argmax of :func:`answer_scores` within each
    example's rows ``offsets[i]:offsets[i+1]``."""
    return torch.tensor([int(scores[a:b].argmax()) for a, b in zip(offsets[:-1], offsets[1:])])
