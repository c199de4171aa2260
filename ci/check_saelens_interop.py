"""Check clbench's SAELens folders against the real ``sae_lens`` package, both ways.

    python3 -m venv /tmp/saelens-venv
    /tmp/saelens-venv/bin/pip install -c ci/constraints.txt sae-lens   # beside clbench's torch
    PYTHONPATH=. /tmp/saelens-venv/bin/python ci/check_saelens_interop.py

(sae-lens is not a clbench dependency and goes in a throwaway venv: it pulls transformer-lens and
datasets. To reuse clbench's torch there, add a ``.pth`` file naming clbench's site-packages to
the venv before installing; the constraints file then keeps every shared version as it is.)

1. a TopK and a ReLU SAE fitted on split-digits MLP ``fc1`` activations are exported
   (:func:`clbench.sae.saelens.export_saelens`) and read by ``sae_lens.SAE.load_from_disk``;
   SAELens's ``encode``/``decode`` must equal clbench's on those activations;
2. SAELens's own ``save_model`` output (its 6.x nested ``cfg.json``) of a random "standard" and
   a random "topk" SAE with ``apply_b_dec_to_input=False`` is read by :func:`clbench.sae.saelens.load_saelens`
   with the same outputs.

Prints one line per check and exits non-zero on a mismatch. Last run: sae-lens 6.54.12,
torch 2.15.0 (the four checks agree to < 1e-5).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch


def main() -> int:
    import sae_lens
    from sae_lens import SAE

    from clbench.models import create_model
    from clbench.sae.fit import fit_layer_sae
    from clbench.sae.saelens import export_saelens, load_saelens
    from clbench.streams import build_stream

    torch.set_num_threads(1)
    stream = build_stream("split-digits", seed=0)
    model = create_model("mlp", stream.input_shape, stream.n_classes)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("topk", "relu_l1"):
            f = fit_layer_sae(model, "fc1", stream.x_train[:300], kind=kind, expansion=2, k=8,
                              steps=30, seed=0)
            out = export_saelens(f.sae, Path(tmp) / kind, hook_name="fc1", model_name="mlp")
            theirs = SAE.load_from_disk(str(out))
            with torch.no_grad():
                z, z_sl = f.sae.encode(f.acts), theirs.encode(f.acts)
                err = max(float((z - z_sl).abs().max()),
                          float((f.sae.decode(z) - theirs.decode(z_sl)).abs().max()))
            ok = err < 1e-4
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} clbench {kind} -> SAELens "
                  f"{type(theirs).__name__}: max |diff| {err:.2e}")
        for arch, extra in (("standard", {}), ("topk", {"k": 5})):
            cfg = {"architecture": arch, "d_in": 12, "d_sae": 40, "dtype": "float32",
                   "device": "cpu", "apply_b_dec_to_input": False, **extra}
            theirs = SAE.from_dict(cfg)
            with torch.no_grad():
                for p in theirs.parameters():
                    p.normal_()
            theirs.save_model(Path(tmp) / arch)
            ours = load_saelens(Path(tmp) / arch)
            x = torch.randn(64, 12)
            with torch.no_grad():
                z_sl, z = theirs.encode(x), ours.encode(x)
                err = max(float((z - z_sl).abs().max()),
                          float((ours.decode(z) - theirs.decode(z_sl)).abs().max()))
            ok = err < 1e-4
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} SAELens {arch} (apply_b_dec_to_input=False, its "
                  f"save_model) -> clbench {type(ours).__name__}: max |diff| {err:.2e}")
    print(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
