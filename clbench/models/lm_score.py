"""Training loss and evaluation of a causal LM on ``(prompt, answer, choices)`` examples.

    batch = answer_batch(tokenizer, [("Capital of France?", " Paris")])   # ids, mask, labels
    loss = answer_loss(model(batch["input_ids"], batch["attention_mask"]), batch["labels"])
    loss = model_answer_loss(model, batch, prefix_cache=cache)   # the same, head on answers only
    predict_choice(model, tokenizer, [Example("Cats are", choices=(" animals", " food"))])  # [0]
    generate_greedy(model, tokenizer, ["Capital of France?"], max_new_tokens=8)
    perplexity(model, tokenizer, held_out_prose, window=256)

Tokenisation follows lm-evaluation-harness: trailing whitespace of a prompt moves to the start of
its answer, ``prompt + answer`` is tokenised as one string and the answer is the tokens after the
prompt's own tokens; a sequence longer than ``max_len`` loses prompt tokens from the left. The
answer is appended verbatim (include any separating space in it).

- **Loss** (:func:`answer_loss`, :func:`model_answer_loss`): mean next-token cross-entropy over
  the answer tokens (and the EOS :func:`answer_batch` appends, so that generation learns to
  stop); prompt and padding positions have label ``-100`` and contribute nothing.
- **Multiple choice** (:func:`choice_scores`): ``score(c) = sum_t log p(c_t | prompt, c_<t)`` over
  the choice's tokens, no EOS, *not* length-normalised (lm-eval's ``acc``); ``length_norm=True``
  divides by the choice's length in UTF-8 bytes (lm-eval's ``acc_norm``).
- **Generation** (:func:`generate_greedy`): greedy decoding of at most ``max_new_tokens`` tokens,
  stopping at EOS; :func:`exact_match` compares after a caller-supplied ``normalize``.
- **Perplexity** (:func:`perplexity`): ``exp(mean NLL per token)`` over the text's tokens, scored
  in windows of ``window`` tokens that slide by ``stride``; each token is scored once, with at
  least ``window - stride`` tokens of context after the first window.

Batches are right-padded for scoring and left-padded for generation; position ids count real
tokens only (:func:`clbench.models.lm.position_ids_of`), so padding never changes a score.
``model`` is a :class:`clbench.models.lm.CausalLMModel` or a plain ``transformers`` causal LM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from clbench.errors import ClbenchError
from clbench.models.lm import CausalLMModel, PrefixCache, position_ids_of

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One task item: ``answer`` for training and generation, ``choices`` for multiple choice."""

    prompt: str
    answer: str = ""
    choices: tuple[str, ...] = ()


ExampleLike = Union[Example, Sequence[Any]]


def as_example(x: ExampleLike) -> Example:
    """An :class:`Example` from itself or a ``(prompt, answer[, choices])`` tuple."""
    if isinstance(x, Example):
        return x
    prompt, answer, *rest = (*x, "") if len(x) == 1 else x
    return Example(str(prompt), str(answer), tuple(rest[0]) if rest else ())


def chat_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """``user`` in the tokenizer's chat template, ending where the assistant's answer starts;
    ``user`` unchanged when the tokenizer has no template."""
    if not getattr(tokenizer, "chat_template", None):
        return user
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_pair(tokenizer: Any, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt`` and of ``answer`` following it (lm-eval's split)."""
    n_space = len(prompt) - len(prompt.rstrip())
    if n_space:
        prompt, answer = prompt[:-n_space], prompt[-n_space:] + answer
    whole = tokenizer(prompt + answer)["input_ids"]
    context = tokenizer(prompt)["input_ids"]
    return list(whole[:len(context)]), list(whole[len(context):])


def _pad_id(tokenizer: Any) -> int:
    for pad in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if pad is not None:
            return int(pad)
    return 0


def pad_rows(rows: list[list[int]], pad: int, side: str = "right") -> tuple[Tensor, Tensor]:
    """Lists of ids -> ``ids [B, T]`` and ``attention_mask [B, T]``, padded on ``side``."""
    if side not in ("left", "right"):
        raise ClbenchError(f"padding side must be 'left' or 'right'; got {side!r}")
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = torch.tensor(r, dtype=torch.long), 1
    return ids, mask


def answer_batch(tokenizer: Any, examples: Iterable[ExampleLike], *, max_len: int | None = None,
                 eos: bool = True, side: str = "right") -> dict[str, Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` ``[B, T]``: labels are the answer's ids
    (+ EOS when ``eos``) and ``-100`` on prompt tokens and padding."""
    seqs, labels = [], []
    for ex in map(as_example, examples):
        ctx, ans = encode_pair(tokenizer, ex.prompt, ex.answer)
        if eos and tokenizer.eos_token_id is not None:
            ans = ans + [int(tokenizer.eos_token_id)]
        seq, lab = ctx + ans, [IGNORE] * len(ctx) + ans
        if max_len is not None and len(seq) > max_len:
            seq, lab = seq[-max_len:], lab[-max_len:]
        seqs.append(seq)
        labels.append(lab)
    ids, mask = pad_rows(seqs, _pad_id(tokenizer), side)
    lab_t, _ = pad_rows(labels, IGNORE, side)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab_t}


def token_logprobs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``log p(label_t | <t)`` ``[B, T-1]`` and its mask (``label != -100``), shifted by one."""
    logits, target = logits[:, :-1].float(), labels[:, 1:]
    keep = target != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * keep, keep


def answer_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over the labelled (answer) tokens; ``logits [B, T, V]``."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                           ignore_index=IGNORE)


def model_answer_loss(model: CausalLMModel, batch: dict[str, Tensor], *,
                      prefix_cache: PrefixCache | None = None) -> Tensor:
    """:func:`answer_loss` of ``model`` on ``batch`` (:func:`answer_batch`), the LM head applied
    only where a label follows: the training path (the head, ``d x vocab``, dominates the step
    when the top blocks train and answers are short)."""
    device = next(model.parameters()).device
    hidden = model.forward_features(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                    prefix_cache=prefix_cache)
    target = batch["labels"][:, 1:].to(device)
    keep = target != IGNORE
    logits = model.forward_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def answer_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum of the labelled tokens' log-likelihood per sequence ``[B]``."""
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(dim=1)


def lm_logits(model: Any, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Logits ``[B, T, V]`` of a CausalLMModel or a plain transformers causal LM."""
    device = next(model.parameters()).device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    if isinstance(model, CausalLMModel):
        return model(ids, mask)
    return model(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask)).logits


@torch.no_grad()
def score_answers(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], *,
                  batch_size: int = 16, max_len: int | None = None) -> Tensor:
    """``sum_t log p(answer_t | prompt, answer_<t)`` for each ``(prompt, answer)`` ``[N]``."""
    out = []
    for start in range(0, len(pairs), batch_size):
        b = answer_batch(tokenizer, pairs[start:start + batch_size], max_len=max_len, eos=False)
        logits = lm_logits(model, b["input_ids"], b["attention_mask"])
        out.append(answer_logprob(logits, b["labels"].to(logits.device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def choice_scores(model: Any, tokenizer: Any, examples: Iterable[ExampleLike], *,
                  length_norm: bool = False, batch_size: int = 16) -> list[Tensor]:
    """Per example, each choice's summed log-likelihood ``[n_choices]`` (divided by its UTF-8
    byte length when ``length_norm``)."""
    exs = [as_example(e) for e in examples]
    if any(not e.choices for e in exs):
        raise ClbenchError("multiple-choice scoring needs examples with choices")
    pairs = [(e.prompt, c) for e in exs for c in e.choices]
    flat = score_answers(model, tokenizer, pairs, batch_size=batch_size)
    if length_norm:
        flat = flat / torch.tensor([max(len(c.encode()), 1) for _, c in pairs], dtype=flat.dtype)
    return list(flat.split([len(e.choices) for e in exs]))


def predict_choice(model: Any, tokenizer: Any, examples: Iterable[ExampleLike], **kw: Any) -> list[int]:
    """Index of the highest-scoring choice per example (:func:`choice_scores`)."""
    return [int(s.argmax()) for s in choice_scores(model, tokenizer, examples, **kw)]


def choice_accuracy(model: Any, tokenizer: Any, examples: Iterable[ExampleLike], **kw: Any) -> float:
    """Fraction of examples whose ``answer`` is the predicted choice."""
    exs = [as_example(e) for e in examples]
    preds = predict_choice(model, tokenizer, exs, **kw)
    return sum(e.choices[p] == e.answer for e, p in zip(exs, preds)) / max(len(exs), 1)


@torch.no_grad()
def generate_greedy(model: Any, tokenizer: Any, prompts: Sequence[str], *,
                    max_new_tokens: int = 16, batch_size: int = 16) -> list[str]:
    """Greedy continuation of each prompt: at most ``max_new_tokens`` tokens, up to EOS, decoded
    without special tokens (uses the model's KV cache through ``transformers``' ``generate``)."""
    lm = model.lm if isinstance(model, CausalLMModel) else model
    device = next(lm.parameters()).device
    pad, out = _pad_id(tokenizer), []
    was_training = lm.training
    lm.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            rows = [tokenizer(p)["input_ids"] for p in prompts[start:start + batch_size]]
            ids, mask = pad_rows(rows, pad, "left")
            gen = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                              max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                              eos_token_id=tokenizer.eos_token_id, temperature=None, top_p=None,
                              top_k=None)
            out += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    finally:
        lm.train(was_training)
    return out


def exact_match(predictions: Sequence[str], references: Sequence[str],
                normalize: Callable[[str], str] = str.strip) -> float:
    """Fraction of ``normalize(prediction) == normalize(reference)``."""
    if len(predictions) != len(references):
        raise ClbenchError(f"{len(predictions)} predictions for {len(references)} references")
    hits = sum(normalize(p) == normalize(r) for p, r in zip(predictions, references))
    return hits / max(len(references), 1)


def generation_accuracy(model: Any, tokenizer: Any, examples: Iterable[ExampleLike], *,
                        normalize: Callable[[str], str] = str.strip, max_new_tokens: int = 16,
                        batch_size: int = 16) -> float:
    """Exact match of each prompt's greedy generation with its answer."""
    exs = [as_example(e) for e in examples]
    preds = generate_greedy(model, tokenizer, [e.prompt for e in exs],
                            max_new_tokens=max_new_tokens, batch_size=batch_size)
    return exact_match(preds, [e.answer for e in exs], normalize)


@torch.no_grad()
def perplexity(model: Any, tokenizer: Any, text: str, *, window: int = 256,
               stride: int | None = None, batch_size: int = 8) -> float:
    """Token-level perplexity of ``text``: windows of ``window`` tokens every ``stride`` (default
    ``window // 2``), each token scored once; the first token is context only."""
    stride = window // 2 if stride is None else stride
    if not 0 < stride <= window:
        raise ClbenchError(f"perplexity needs 0 < stride <= window; got {stride}, {window}")
    ids = tokenizer(text)["input_ids"]
    if len(ids) < 2:
        raise ClbenchError("perplexity needs a text of at least 2 tokens")
    rows, labels, prev_end = [], [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        seq = ids[begin:end]
        n_new = end - prev_end   # tokens not scored by an earlier window
        rows.append(seq)
        labels.append([IGNORE] * (len(seq) - n_new) + seq[len(seq) - n_new:])
        prev_end = end
        if end == len(ids):
            break
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        b_ids, mask = pad_rows(rows[start:start + batch_size], _pad_id(tokenizer))
        b_lab, _ = pad_rows(labels[start:start + batch_size], IGNORE)
        logits = lm_logits(model, b_ids, mask)
        logp, keep = token_logprobs(logits, b_lab.to(logits.device))
        total -= float(logp.sum())
        count += int(keep.sum())
    return math.exp(total / count)
