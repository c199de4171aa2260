"""General text for fitting a language model's SAE: text that is in no task of ``text-v1``.

    >>> corpus = build_sae_corpus(n_passages=2000, n_glosses=2000)
    >>> len(corpus.texts), corpus.fingerprint, corpus.counts       # doctest: +SKIP
    (4000, 'sha256...', {'kjv': 2000, 'glosses': 2000})

Seed 001 assumes an SAE pretrained on the model's general activations, before and apart from the
continual tasks. clbench fits it on two sources read from the same Debian files as the stream
(:mod:`clbench.data.text_tasks`):

- **KJV passages** of up to 3 verses that share no 8-word sequence with any candidate of any task
  (the filter the held-out prose uses), and are not among the held-out prose passages of the seeds
  ``0 .. PROSE_SEEDS - 1`` at up to ``MAX_PROSE`` passages (the first ``MAX_PROSE`` of each seed's
  permutation), so the perplexity text of those runs stays unseen by the SAE too;
- **WordNet noun glosses** (the definition, examples cut) of 5 to 40 words that are not the text of
  any ``definition`` task candidate and share no 8-word sequence with a candidate of any task.

Each source is drawn with ``numpy.random.default_rng([corpus_seed, 97])`` / ``[corpus_seed, 96]``;
the fingerprint covers the construction (:data:`SAE_CORPUS_VERSION`), the files' fingerprints,
the sizes and the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clbench.data.base import sha256_of
from clbench.data.prose import load_kjv
from clbench.data.text_tasks import TEMPLATES, TEXT_V1_VERSION, VERSES_PER_PASSAGE, _ngrams, _pools
from clbench.data.wordnet import load_wordnet_nouns
from clbench.errors import DataError

#: bump when the selection below changes
SAE_CORPUS_VERSION = "1"
#: held-out prose passages of these seeds (first MAX_PROSE of each seed's draw) are left out
PROSE_SEEDS, MAX_PROSE = 10, 512
GLOSS_WORDS = (5, 40)


@dataclass(frozen=True)
class SAECorpus:
    """The texts (KJV passages first, then glosses), per-source counts, one fingerprint."""

    texts: list[str]
    counts: dict[str, int]
    fingerprint: str


def build_sae_corpus(n_passages: int = 2000, n_glosses: int = 2000, *, corpus_seed: int = 0,
                     data_root: Path | str | None = None, prose_seeds: int = PROSE_SEEDS,
                     max_prose: int = MAX_PROSE) -> SAECorpus:
    """``n_passages`` KJV passages and ``n_glosses`` WordNet glosses in no task (module doc);
    the held-out prose of seeds ``0 .. prose_seeds - 1`` (up to ``max_prose`` each) left out."""
    if n_passages < 0 or n_glosses < 0 or n_passages + n_glosses == 0:
        raise DataError(f"SAE corpus: n_passages={n_passages}, n_glosses={n_glosses}: give "
                        "non-negative sizes, not both zero")
    pools = _pools(data_root)
    seen: set[tuple[str, ...]] = set()
    for pool in pools:
        for c in pool.candidates:
            seen |= _ngrams(f"{c.prompt} {c.answer}")
    kjv = load_kjv(data_root)
    clean = [p for p in kjv.passages(VERSES_PER_PASSAGE) if not (_ngrams(p) & seen)]
    held_out: set[int] = set()
    for seed in range(prose_seeds):   # the same draw as text_tasks._prose
        held_out |= {int(i) for i in np.random.default_rng([seed, 99]).permutation(len(clean))[:max_prose]}
    free = [p for i, p in enumerate(clean) if i not in held_out]
    task_prompts = {c.prompt for pool in pools for c in pool.candidates}
    wn = load_wordnet_nouns(data_root)
    glosses = sorted({
        s.definition for s in wn.synsets.values()
        if GLOSS_WORDS[0] <= len(s.definition.split()) <= GLOSS_WORDS[1]
        and TEMPLATES["definition"].format(definition=s.definition) not in task_prompts
        and not (_ngrams(s.definition) & seen)})
    for name, have, want in (("KJV passages", len(free), n_passages),
                             ("WordNet glosses", len(glosses), n_glosses)):
        if want > have:
            raise DataError(f"SAE corpus: {want} {name} asked for, {have} available outside the "
                            f"tasks; ask for fewer")
    passages = [free[int(i)] for i in
                np.random.default_rng([corpus_seed, 97]).permutation(len(free))[:n_passages]]
    picked = [glosses[int(i)] for i in
              np.random.default_rng([corpus_seed, 96]).permutation(len(glosses))[:n_glosses]]
    sources = sorted({s for p in pools for s in p.sources} | {kjv.fingerprint, wn.fingerprint})
    fp = sha256_of(SAE_CORPUS_VERSION.encode(), TEXT_V1_VERSION.encode(),
                   *(s.encode() for s in sources),
                   f"{corpus_seed} {n_passages} {n_glosses} {prose_seeds} {max_prose}".encode())
    return SAECorpus(passages + picked, {"kjv": len(passages), "glosses": len(picked)}, fp)


__all__ = ["SAE_CORPUS_VERSION", "SAECorpus", "build_sae_corpus"]
