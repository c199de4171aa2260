"""``clbench sae fit``: a language model's pretrained SAE (:mod:`clbench.sae.lm_fit`).

    clbench sae fit --model smollm2-135m --layer block28
    clbench sae fit --model smollm2-135m --layer block28 --set model.weights=DIR --steps 4000

Prints where the SAE and its record (``sae.json``: provenance and quality) are; pass the SAE to a
run with ``--set sae-reg.sae_path=PATH``.
"""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_sae_verb(sub: Any) -> None:
    s = sub.add_parser("sae", help="fit a language model's SAE on general text (sae fit)")
    ssub = s.add_subparsers(dest="sae_verb", required=True)
    f = ssub.add_parser("fit", help="fit a TopK SAE on a causal LM's residual stream at one "
                                    "layer, over text in no task (KJV passages, WordNet glosses)")
    f.add_argument("--model", default="smollm2-135m", help="a language model of the registry")
    f.add_argument("--layer", default=None,
                   help="hook layer, e.g. block28 (default: the model's default SAE layer)")
    f.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                   help="model options, e.g. model.weights=DIR")
    f.add_argument("--n-passages", type=int, default=2000, help="KJV passages (default 2000)")
    f.add_argument("--n-glosses", type=int, default=2000, help="WordNet glosses (default 2000)")
    f.add_argument("--expansion", type=int, default=8, help="latents = expansion x d (default 8)")
    f.add_argument("--k", type=int, default=32, help="TopK's k (default 32)")
    f.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    f.add_argument("--batch-size", type=int, default=1024, help="tokens per step (default 1024)")
    f.add_argument("--max-tokens", type=int, default=100_000,
                   help="activation buffer, in tokens (default 100000: 230 MB at d = 576)")
    f.add_argument("--task-examples", type=int, default=200,
                   help="training examples per text-v1 task (seed 0) scored in the record "
                        "(default 200, the stream's default)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default=None,
                   help="folder for sae.pt and sae.json (default: the cache, by fingerprint)")
    f.add_argument("--data-root", default=None, help="folder with the Debian text files")
    f.add_argument("--threads", type=int, default=None, help="torch threads")


def cmd_sae(a: argparse.Namespace) -> int:
    # lazy: torch and transformers load only for this verb
    from pathlib import Path

    import torch

    from clbench.data.sae_corpus import build_sae_corpus
    from clbench.data.text_stream import tokenize_text_v1
    from clbench.data.text_tasks import build_text_v1
    from clbench.errors import ClbenchError
    from clbench.models import MODELS, create_model
    from clbench.sae.lm_fit import LMSAESettings, fit_lm_sae

    if a.threads is not None:
        if a.threads < 1:
            raise ClbenchError(f"--threads {a.threads}: give at least 1")
        torch.set_num_threads(a.threads)
    options: dict[str, str] = {}
    for item in a.set:
        key, eq, value = item.partition("=")
        if not eq or not key.startswith("model."):
            raise ClbenchError(f"--set {item!r}: sae fit takes model options only, as "
                               "model.KEY=VALUE (e.g. model.weights=DIR)")
        options[key.removeprefix("model.")] = value
    if MODELS.get(a.model).meta.get("input") != "text":
        raise ClbenchError(f"--model {a.model}: sae fit is for language models; use "
                           "--model smollm2-135m (image models fit their SAEs inside a run)")
    model = create_model(a.model, input_shape=(3, 128), n_classes=1, **options)
    layer = a.layer or model.default_layer
    settings = LMSAESettings(layer=layer, expansion=a.expansion, k=a.k, steps=a.steps,
                             batch_size=a.batch_size, max_tokens=a.max_tokens, seed=a.seed)
    corpus = build_sae_corpus(a.n_passages, a.n_glosses, data_root=a.data_root)
    v1 = build_text_v1(0, n_train=a.task_examples, n_test=1, n_prose=1, data_root=a.data_root)
    ts = tokenize_text_v1(v1, model.tokenizer, max_len=settings.max_len,
                          tokenizer_id=model.fingerprint)
    rows = {name: (ts.stream.x_train[idx][:, 0], ts.stream.x_train[idx][:, 1])
            for name, idx in zip(ts.task_names, ts.stream.train_idx)}
    fitted = fit_lm_sae(model, model.tokenizer, corpus, settings,
                        out_dir=Path(a.out) if a.out else None, task_rows=rows,
                        log=lambda m: print(m, flush=True))
    q = fitted.meta["quality"]
    for name, v in q.items():
        print(f"{name:<24} fvu {v['fvu']:.3f}  l0 {v['l0']:.1f}  dead {v['dead_fraction']:.3f}"
              f"  dense {v['dense_fraction']:.3f}")
    print(f"sae: {fitted.path}" + ("  (reused)" if fitted.reused else ""))
    print(f"record: {fitted.path.with_suffix('.json')}")
    print(json.dumps({"fingerprint": fitted.meta["fingerprint"]}))
    return 0
