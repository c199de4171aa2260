"""A tiny random-initialised Llama and a character tokenizer, saved in the real on-disk format
(``save_pretrained``) so that tests load it through ``load_lm(weights=DIR)``."""
from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

#: the tiny tokenizer's vocabulary: 4 special tokens, then one token per character
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = SPECIALS + list(string.ascii_lowercase + " ?.:,\n")


def save_tiny_lm(path: Path, *, n_layers: int = 4, seed: int = 0) -> Path:
    """A 4-block, d=32 Llama with a character-level tokenizer in ``path``."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))  # no merges: chars
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                        bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(CHARS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return save_tiny_lm(tmp_path_factory.mktemp("tiny-llama"))
