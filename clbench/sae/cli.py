"""``clbench sae fit``: a language model's pretrained SAE (:mod:`clbench.sae.lm_fit`);
``clbench sae export``: a clbench SAE file as a SAELens folder (:mod:`clbench.sae.saelens`).

    clbench sae fit --model smollm2-135m --layer block28
    clbench sae fit --model smollm2-135m --layer block28 --set model.weights=DIR --steps 4000
    clbench sae export sae.pt sae-saelens/ --hook-name block28 --model-name smollm2-135m

Prints where the SAE and its record (``sae.json``: provenance and quality) are; pass the SAE to a
run with ``--set sae-reg.sae_path=PATH`` (a SAELens folder works there too).
"""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_sae_verb(sub: Any) -> None:
    s = sub.add_parser("sae", help="fit a language model's SAE on general text (sae fit); "
                                   "write an SAE in the SAELens format (sae export)")
    ssub = s.add_subparsers(dest="sae_verb", required=True)
    x = ssub.add_parser("export", help="write a clbench SAE file as a SAELens folder (cfg.json, "
                                       "sae_weights.safetensors), for SAELens and SAEBench")
    x.add_argument("sae_file", metavar="SAE_FILE", help="a file written by SAEBase.save")
    x.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (new or empty)")
    x.add_argument("--hook-name", default=None,
                   help="cfg.json's hook_name (default: the layer in SAE_FILE's .json record, "
                        "if any)")
    x.add_argument("--model-name", default=None,
                   help="cfg.json's model_name (default: the model source in the record, if any; a "
                        "local folder by its name only)")
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


def cmd_sae_export(a: argparse.Namespace) -> int:
    """``clbench sae export SAE_FILE OUT_DIR``: names default to ``sae fit``'s record beside it."""
    from pathlib import Path

    from clbench.sae.saelens import export_saelens, load_any_sae

    src = Path(a.sae_file)
    record_file = src.with_suffix(".json")
    try:
        record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    except ValueError:
        record = {}                                     # not sae fit's record: no names from it
    record = record if isinstance(record, dict) else {}
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    hook = a.hook_name if a.hook_name is not None else str(record.get("layer", ""))
    source = str(model.get("source", ""))
    source = Path(source).name if Path(source).is_absolute() else source   # a local folder
    name = a.model_name if a.model_name is not None else source
    out = export_saelens(load_any_sae(src), a.out_dir, hook_name=hook, model_name=name)
    print(f"saelens: {out}  (load with sae_lens.SAE.load_from_disk, or pass it as "
          f"sae-reg.sae_path)")
    return 0


def cmd_sae(a: argparse.Namespace) -> int:
    if a.sae_verb == "export":
        return cmd_sae_export(a)
    # lazy: torch and transformers load only for this verb
    from pathlib import Path

    import torch

    from clbench.errors import ClbenchError
    from clbench.models import MODELS, create_model
    from clbench.sae.lm_fit import LMSAESettings, pretrained_sae

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
    fitted = pretrained_sae(model, settings, n_passages=a.n_passages, n_glosses=a.n_glosses,
                            task_examples=a.task_examples, data_root=a.data_root,
                            out_dir=Path(a.out) if a.out else None,
                            log=lambda m: print(m, flush=True))
    q = fitted.meta["quality"]
    for name, v in q.items():
        print(f"{name:<24} fvu {v['fvu']:.3f}  l0 {v['l0']:.1f}  dead {v['dead_fraction']:.3f}"
              f"  dense {v['dense_fraction']:.3f}")
    print(f"sae: {fitted.path}" + ("  (reused)" if fitted.reused else ""))
    print(f"record: {fitted.path.with_suffix('.json')}")
    print(json.dumps({"fingerprint": fitted.meta["fingerprint"]}))
    return 0
