"""Answer-only loss, multiple choice, greedy generation and perplexity on the tiny Llama.

    $ python -m pytest tests/models/test_lm_score.py -q
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clbench.errors import ClbenchError
from clbench.models.lm import CausalLMModel, PrefixCache, load_lm
from clbench.models.lm_score import (
    IGNORE,
    Example,
    answer_batch,
    answer_loss,
    as_example,
    choice_accuracy,
    choice_scores,
    encode_pair,
    exact_match,
    generate_greedy,
    generation_accuracy,
    model_answer_loss,
    perplexity,
    predict_choice,
    score_answers,
)

from .conftest import CHARS


@pytest.fixture()
def lm(tiny_lm_dir: Path) -> tuple[CausalLMModel, object]:
    loaded = load_lm(str(tiny_lm_dir))
    return CausalLMModel(loaded.model, train_blocks=2), loaded.tokenizer


def test_encode_pair_moves_trailing_space_to_the_answer(lm: tuple[CausalLMModel, object]) -> None:
    _, tok = lm
    ctx, ans = encode_pair(tok, "a cat is ", "nice")
    assert tok.decode(ctx) == "a cat is" and tok.decode(ans) == " nice"
    assert as_example(("p", "a")) == Example("p", "a")
    assert as_example(("p", "a", ["x", "y"])).choices == ("x", "y")


def test_answer_batch_labels_only_the_answer(lm: tuple[CausalLMModel, object]) -> None:
    _, tok = lm
    b = answer_batch(tok, [("hi", " yo"), ("what is it?", " a")])
    assert b["input_ids"].shape == b["labels"].shape == (2, len("what is it?") + 3)
    lab = b["labels"][0].tolist()
    assert lab[:2] == [IGNORE, IGNORE] and tok.decode(lab[2:5]) == " yo" and lab[5] == tok.eos_token_id
    assert lab[6:] == [IGNORE] * (len(lab) - 6) and b["attention_mask"][0].sum() == 6
    cut = answer_batch(tok, [("a long prompt", " ok")], max_len=5)
    assert cut["input_ids"].shape[1] == 5 and (cut["labels"][0] != IGNORE).sum() == 4


def test_answer_loss_ignores_prompt_tokens(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    b = answer_batch(tok, [("where is it?", " here"), ("go", " up")])
    with torch.no_grad():
        logits = model(b["input_ids"], b["attention_mask"])
    loss = answer_loss(logits, b["labels"])
    # logits at positions that predict a prompt token (or padding) do not count ...
    predicts_prompt = b["labels"][:, 1:] == IGNORE
    noisy = logits.clone()
    noisy[:, :-1][predicts_prompt] += torch.randn_like(noisy[:, :-1][predicts_prompt]) * 10
    assert torch.equal(answer_loss(noisy, b["labels"]), loss)
    # ... a label on a prompt token does, once it is no longer -100
    relabelled = b["labels"].clone()
    relabelled[0, 3] = b["input_ids"][0, 3]
    assert not torch.isclose(answer_loss(logits, relabelled), loss)
    # and a different answer changes the loss
    other = answer_batch(tok, [("where is it?", " gone"), ("go", " up")])
    with torch.no_grad():
        assert not torch.isclose(answer_loss(model(other["input_ids"], other["attention_mask"]),
                                             other["labels"]), loss)
    # the mean is over answer tokens: the manual sum agrees
    keep = b["labels"][:, 1:] != IGNORE
    target = b["labels"][:, 1:].clamp(min=0)[..., None]
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, target)[..., 0]
    torch.testing.assert_close(loss, -(logp[keep]).mean())


def test_model_answer_loss_equals_the_loss_on_all_logits(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    b = answer_batch(tok, [("where is it?", " here"), ("go", " up")], side="left")
    cache = PrefixCache(model)
    fast = model_answer_loss(model, b, prefix_cache=cache)
    fast.backward()
    fast_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    slow = answer_loss(model(b["input_ids"], b["attention_mask"]), b["labels"])
    slow.backward()
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-6)
    for g, p in zip(fast_grads, (p for p in model.parameters() if p.requires_grad)):
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-5)


def test_multiple_choice_picks_the_trained_answer(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    ex = Example("which pet?", answer=" cat", choices=(" dog", " cat", " bird"))
    b = answer_batch(tok, [(ex.prompt, ex.answer)], eos=False)
    cache = PrefixCache(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        model_answer_loss(model, b, prefix_cache=cache).backward()
        opt.step()
    assert predict_choice(model, tok, [ex]) == [1]
    assert choice_accuracy(model, tok, [ex, (ex.prompt, " dog", ex.choices)]) == 0.5
    scores = choice_scores(model, tok, [ex])[0]
    torch.testing.assert_close(scores, score_answers(model, tok, [(ex.prompt, c) for c in ex.choices]))
    normed = choice_scores(model, tok, [ex], length_norm=True)[0]
    torch.testing.assert_close(normed, scores / torch.tensor([4.0, 4.0, 5.0]))
    with pytest.raises(ClbenchError, match="choices"):
        choice_scores(model, tok, [("no choices", " x")])


def test_scores_do_not_depend_on_batching(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    pairs = [("a", " bb"), ("a much longer prompt", " c"), ("mid size", " dd ee")]
    together = score_answers(model, tok, pairs, batch_size=3)
    alone = torch.cat([score_answers(model, tok, [p]) for p in pairs])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_greedy_generation_follows_the_argmax(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    prompts = ["hello", "a longer prompt here"]
    out = generate_greedy(model, tok, prompts, max_new_tokens=3)
    assert len(out) == 2
    for prompt, text in zip(prompts, out):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        expected = []
        with torch.no_grad():
            for _ in range(3):
                nxt = int(model(ids)[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                expected.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        assert text == tok.decode(expected, skip_special_tokens=True)
    assert model.training and model.lm.training   # generation restored the mode


def test_exact_match_uses_the_normaliser(lm: tuple[CausalLMModel, object]) -> None:
    assert exact_match([" Paris.", "rome"], ["paris", "Rome"], lambda s: s.strip(" .").lower()) == 1.0
    assert exact_match(["Paris."], ["paris"]) == 0.0
    with pytest.raises(ClbenchError):
        exact_match(["a"], [])
    model, tok = lm
    [pred] = generate_greedy(model, tok, ["q"], max_new_tokens=2)
    assert generation_accuracy(model, tok, [("q", pred)], max_new_tokens=2) == 1.0


def test_perplexity_of_a_uniform_model_is_the_vocab_size(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    with torch.no_grad():
        model.lm.model.norm.weight.zero_()   # hidden state 0 -> logits 0 -> uniform
    text = "in the beginning was the word, and the word was with it. " * 6
    for window, stride in [(32, 16), (64, 64), (400, None)]:
        ppl = perplexity(model, tok, text, window=window, stride=stride)
        assert math.isclose(ppl, len(CHARS), rel_tol=1e-4)


def test_perplexity_scores_each_token_once(lm: tuple[CausalLMModel, object]) -> None:
    model, tok = lm
    text = "short text for a window check, long enough."
    whole = perplexity(model, tok, text, window=len(text) + 1)
    slid = perplexity(model, tok, text, window=len(text) + 1, stride=5)
    assert math.isclose(whole, slid, rel_tol=1e-5)   # one window covers it: the same tokens
    ids = torch.tensor([tok(text)["input_ids"]])
    lab = ids.clone()
    with torch.no_grad():
        nll = answer_loss(model(ids), lab)
    assert math.isclose(whole, math.exp(float(nll)), rel_tol=1e-5)
    with pytest.raises(ClbenchError, match="stride"):
        perplexity(model, tok, text, window=8, stride=9)
