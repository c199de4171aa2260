"""The cost of one crosscoder training step against AuxK's width, side by side in one run.

    python ci/bench_auxk.py                       # the LM analysis' shape (below), 3 rounds
    python ci/bench_auxk.py --k-aux none,128,288 --dead 1504

The shape of ``clbench analyze`` on a text-v1 run of SmolLM2 with 3 layers and 6 checkpoints:
18 sources of d = 576, 2304 latents (expansion 4), k 32, 480 fit rows in one batch. ``--dead``
latents are marked dead (the mask the trainer would read after ``dead_steps`` silent steps), so
AuxK decodes ``min(k_aux, dead)`` of them into every source. ``none`` is the trainer's default,
half the summed source widths (5184 here: every dead latent). Each row: the best of ``--rounds``
forward + backward passes of the reconstruction and AuxK losses, and its ratio to the first row.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.sae.crosscoder import TopKCrosscoder  # noqa: E402
from clbench.sae.topk import AUXK_COEFF, auxk_loss  # noqa: E402


def step_seconds(cc: TopKCrosscoder, x: torch.Tensor, k_aux: int | None, rounds: int) -> float:
    """The best of ``rounds`` timed training steps (no optimizer: it does not depend on k_aux)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        code = cc.encode_sparse(x, dead_steps=1, k_aux=k_aux)
        x_hat = cc.decode_sparse(code.vals, code.idx)
        loss = cc.recon_loss(x_hat, x)
        if code.aux_vals is not None and code.aux_idx is not None:
            aux_hat = cc.decode_sparse(code.aux_vals, code.aux_idx, bias=False)
            loss = loss + auxk_loss(aux_hat, x - x_hat, AUXK_COEFF, cc.recon_loss)
        loss.backward()
        cc.zero_grad(set_to_none=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=18)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--latents", type=int, default=2304)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--rows", type=int, default=480)
    p.add_argument("--dead", type=int, default=1504, help="latents marked dead")
    p.add_argument("--k-aux", default="none,128", help="comma-separated; none: the default")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if not 0 <= a.dead <= a.latents:
        print(f"error: --dead {a.dead}: must be between 0 and --latents {a.latents}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.rows, a.sources * a.width)
    cc = TopKCrosscoder([a.width] * a.sources, a.latents, a.k, seed=0)
    dead = torch.zeros(a.latents, dtype=torch.bool)
    dead[a.latents - a.dead:] = True
    cc.dead_mask = lambda _steps: dead   # type: ignore[method-assign]
    widths = [None if v == "none" else int(v) for v in a.k_aux.split(",")]
    print("| k_aux | latents decoded by AuxK | s / step | ratio |\n|---|---:|---:|---:|")
    first = None
    for k_aux in widths:
        s = step_seconds(cc, x, k_aux, a.rounds)
        first = first or s
        used = min(a.sources * a.width // 2 if k_aux is None else k_aux, a.dead)
        label = f"default ({a.sources * a.width // 2})" if k_aux is None else str(k_aux)
        print(f"| {label} | {used} | {s:.2f} | {s / first:.3f} |")
    print(f"\ncommand: python ci/bench_auxk.py {' '.join(argv or sys.argv[1:])} "
          f"(torch threads: {a.threads})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
