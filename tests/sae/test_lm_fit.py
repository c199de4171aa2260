"""A language model's pretrained SAE: the corpus outside the tasks, token activations, the fit,
its record and its reuse, and ``clbench sae fit``; a tiny random Llama and tiny Debian-format files.

    $ python -m pytest tests/sae/test_lm_fit.py -q
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clbench.cli import main
from clbench.data.sae_corpus import build_sae_corpus
from clbench.data.text_tasks import _ngrams, build_text_v1, candidate_pools
from clbench.errors import DataError
from clbench.models import create_model
from clbench.models.lm import position_ids_of
from clbench.sae.lm_fit import LMSAESettings, fit_lm_sae, token_activations, tokenize_texts
from tests.data.text_formats import Synset, write_text_root
from tests.models.conftest import save_tiny_lm

pytest.importorskip("transformers")

#: nouns whose first lemma is not a single word: in no task, so their glosses may enter the corpus
EXTRA = tuple(Synset(3, (f"wood frame {i}",), f"a frame on which carpenters rest the wood number {i} "
                                               "while they are sawing it") for i in range(6))
SMALL = {"prose_seeds": 1, "max_prose": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saefit")
    write_text_root(root / "data", extra_synsets=EXTRA)
    return {"lm": save_tiny_lm(root / "lm"), "data": root / "data"}


@pytest.fixture(scope="module")
def model(files: dict[str, Path]):  # noqa: ANN201
    return create_model("smollm2-135m", input_shape=(3, 128), n_classes=1,
                        weights=str(files["lm"]), train_blocks="2")


def test_the_corpus_holds_no_task_text_and_no_held_out_prose(files: dict[str, Path]) -> None:
    c = build_sae_corpus(1, 4, data_root=files["data"], **SMALL)
    assert c.counts == {"kjv": 1, "glosses": 4} and len(c.texts) == 5
    task_text = [f"{e.prompt} {e.answer}" for pool in candidate_pools(files["data"]).values()
                 for e in pool]
    seen = set().union(*(_ngrams(t) for t in task_text))
    assert all(not (_ngrams(t) & seen) and not any(t in u for u in task_text) for t in c.texts)
    prose = build_text_v1(0, n_train=2, n_test=2, n_prose=1, data_root=files["data"]).prose
    assert not set(prose.passages) & set(c.texts)           # seed 0's perplexity text stays out
    again = build_sae_corpus(1, 4, data_root=files["data"], **SMALL)
    other = build_sae_corpus(1, 4, corpus_seed=1, data_root=files["data"], **SMALL)
    assert again == c and other.fingerprint != c.fingerprint
    with pytest.raises(DataError, match="8 WordNet glosses asked for, 7 available outside the tasks"):
        build_sae_corpus(0, 8, data_root=files["data"], **SMALL)   # 6 extra + "idea" (its word in its gloss)


def test_token_activations_are_the_blocks_output_at_every_real_token(model, files) -> None:  # noqa: ANN001
    ids, mask = tokenize_texts(model.tokenizer, ["in the beginning", "a frame", "x"], max_len=12)
    got = token_activations(model, "block1", ids, mask, batch=2)
    with torch.no_grad():
        out = model.lm(input_ids=ids, attention_mask=mask, position_ids=position_ids_of(mask),
                       output_hidden_states=True)
    want = out.hidden_states[2][mask.bool()]                # hidden_states[i + 1]: block i's output
    assert got.shape == (int(mask.sum()), model.feature_dim)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert len(token_activations(model, "block1", ids, mask, max_tokens=5)) == 5


def test_a_fit_records_its_provenance_and_is_reused(model, files, tmp_path: Path) -> None:  # noqa: ANN001
    corpus = build_sae_corpus(1, 6, data_root=files["data"], **SMALL)
    s = LMSAESettings(layer="block2", expansion=2, k=4, steps=5, batch_size=32, heldout=0.3)
    ids, mask = tokenize_texts(model.tokenizer, ["a task row", "another one"], max_len=16)
    fitted = fit_lm_sae(model, model.tokenizer, corpus, s, out_dir=tmp_path / "sae",
                        task_rows={"t0": (ids, mask)})
    meta = json.loads((tmp_path / "sae" / "sae.json").read_text())
    assert not fitted.reused and meta == fitted.meta
    assert meta["model"]["fingerprint"] == model.fingerprint and meta["layer"] == "block2"
    assert meta["corpus"]["fingerprint"] == corpus.fingerprint
    assert meta["corpus"]["texts_fit"] + meta["corpus"]["texts_heldout"] == 7
    # the split is of a seeded order: the held-out part is not simply the last source's texts
    held, fit = meta["corpus"]["sources_heldout"], meta["corpus"]["sources_fit"]
    assert sum(held.values()) == meta["corpus"]["texts_heldout"] and set(held) == {"kjv", "glosses"}
    assert sum(fit.values()) == meta["corpus"]["texts_fit"]   # no cap reached here
    assert set(meta["quality"]) == {"corpus_fit", "corpus_heldout", "task:t0"}
    assert all(0 <= q["dead_fraction"] <= 1 and q["l0"] <= 4 for q in meta["quality"].values())
    assert fitted.sae.n_latents == 2 * model.feature_dim
    again = fit_lm_sae(model, model.tokenizer, corpus, s, out_dir=tmp_path / "sae")
    assert again.reused and torch.equal(again.sae.W_dec, fitted.sae.W_dec)
    changed = fit_lm_sae(model, model.tokenizer, corpus, LMSAESettings(layer="block2", expansion=2,
                         k=4, steps=6, batch_size=32, heldout=0.3), out_dir=tmp_path / "sae")
    assert not changed.reused and changed.meta["fingerprint"] != meta["fingerprint"]
    from clbench.strategies.sae_reg import load_sae
    assert load_sae(str(changed.path)).n_latents == 2 * model.feature_dim   # sae-reg.sae_path


def test_cli_fits_and_refuses_bad_input(files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sae", "fit", "--set", f"model.weights={files['lm']}", "--data-root", str(files["data"]),
            "--n-passages", "0", "--n-glosses", "6", "--steps", "3", "--expansion", "2", "--k", "4",
            "--batch-size", "16", "--task-examples", "3"]
    assert main([*base, "--layer", "block3", "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "corpus_heldout" in out and "task:en-fr" in out and (tmp_path / "f" / "sae.pt").is_file()
    for bad, message in ((["--layer", "block9"], "layer 'block9' is not a hook layer"),
                         (["--set", "lr=1"], "sae fit takes model options only"),
                         (["--model", "mlp"], "sae fit is for language models"),
                         (["--n-glosses", "99"], "WordNet glosses asked for")):
        assert main([*base, *bad, "--out", str(tmp_path / "g")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("clbench: error:") and message in err[0]


def test_source_counts_read_each_text_source_off_the_order() -> None:
    from clbench.data.sae_corpus import SAECorpus
    from clbench.sae.lm_fit import source_counts

    corpus = SAECorpus(texts=[f"t{i}" for i in range(7)], counts={"kjv": 3, "glosses": 4},
                       fingerprint="x")
    span = source_counts(corpus, torch.tensor([6, 0, 5, 1, 2, 3, 4]))
    assert span(0, 3) == {"kjv": 1, "glosses": 2}
    assert span(3, 7) == {"kjv": 2, "glosses": 2}
    assert span(0, 7) == corpus.counts
