"""TopK SAE training throughput against the machine's own dense-matmul rate.

    $ python ci/bench.py sae             # 100_000 x 256 acts, n_latents 2048, k 32, batch 4096
    $ python ci/bench.py sae --quick     # 20_000 x 128, n_latents 1024, k 16, batch 2048
    $ python ci/bench.py sae --lm        # the LM SAE: 100_000 x 576, 4608 latents, k 32, batch 1024

Trains :class:`clbench.sae.topk.TopKSAE` with :func:`clbench.sae.train.train_sae` on a fixed
random activation matrix and, in the same run, times square fp32 ``torch.mm`` of comparable
size (``n^3 ~ B d m``), before and after training.

FLOPs of one training step (B batch, d = d_in, m = n_latents, k active latents):

- dense-equivalent, the figure compared with the matmul rate: the step as dense matmuls,
  ``10 B d m`` = encoder forward ``2 B d m`` + decoder forward with ``z`` as a dense ``[B, m]``
  matrix ``2 B m d`` + backward ``6 B d m`` (decoder: gradients for ``z`` and ``W_dec``, ``2 B d m``
  each; encoder: the ``W_enc`` gradient only, as the input is data; so backward = 1.5x forward,
  not the usual 2x). AuxK work (steps with dead latents) and Adam are not counted.
- executed: what clbench's sparse step actually multiplies, ``2 B d m + 8 B k d`` (the dense
  encoder forward, then sparse decoder forward and three sparse backward products).

The dense-equivalent rate can exceed the matmul rate because the step does less work than the
dense formulation; the executed rate shows how busy the arithmetic units really are (the top-k
selection, which is not arithmetic, takes a large share of the step on a CPU).

On a CPU shared with other jobs (load average above the core count), OpenMP threads that
spin while they wait can slow small ops by 10-50x; run with ``OMP_WAIT_POLICY=PASSIVE`` or
``--threads 1`` there. Both rates are measured under the same setting, in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from clbench.sae.train import SAETrainConfig, train_sae

DEFAULT = {"n": 100_000, "d": 256, "m": 2048, "k": 32, "batch": 4096, "steps": 24}
QUICK = {"n": 20_000, "d": 128, "m": 1024, "k": 16, "batch": 2048, "steps": 10}
#: the shape of ``clbench sae fit --model smollm2-135m`` (d = 576, expansion 8, k 32, 1024
#: tokens per step, a 100,000-token buffer): the LM SAE's rate, which depends on the shape only
LM = {"n": 100_000, "d": 576, "m": 4608, "k": 32, "batch": 1024, "steps": 24}


def matmul_gflops(n: int, repeats: int = 7) -> float:
    """Median GFLOP/s of ``[n, n] @ [n, n]`` in fp32 (``2 n^3`` flops each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def step_flops(batch: int, d: int, m: int, k: int) -> tuple[int, int]:
    """(dense-equivalent, executed) FLOPs of one training step; see the module docstring."""
    return 10 * batch * d * m, 2 * batch * d * m + 8 * batch * k * d


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py sae", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI)")
    p.add_argument("--lm", action="store_true",
                   help="the LM SAE's shape (clbench sae fit --model smollm2-135m)")
    for name, value in DEFAULT.items():
        p.add_argument(f"--{name}", type=int, default=None, help=f"default {value}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else LM if args.lm else DEFAULT).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    b, d, m, k = args.batch, args.d, args.m, args.k
    x = torch.randn(args.n, d, generator=torch.Generator().manual_seed(args.seed))
    n_mm = max(64, round((b * d * m) ** (1 / 3) / 64) * 64)
    print(f"sae bench: x [{args.n}, {d}] fp32, n_latents {m}, k {k}, batch {b}, "
          f"{args.steps} timed steps, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if os.getloadavg()[0] > (os.cpu_count() or 1) - 0.5 and torch.get_num_threads() > 1:
        print("warning: the CPU is busy; multi-threaded small ops may stall (see the module "
              "docstring: OMP_WAIT_POLICY=PASSIVE or --threads 1)")

    rate_before = matmul_gflops(n_mm)
    cfg = SAETrainConfig(n_latents=m, k=k, batch_size=b, steps=2, seed=args.seed)
    train_sae(x, cfg)  # warm-up: allocator, kernels
    cfg = SAETrainConfig(n_latents=m, k=k, batch_size=b, steps=args.steps, seed=args.seed)
    _, stats = train_sae(x, cfg)
    rate = (rate_before + matmul_gflops(n_mm)) / 2

    per_step = stats["train_seconds"] / stats["steps"]
    dense, executed = step_flops(b, d, m, k)
    dense_rate, executed_rate = dense / per_step / 1e9, executed / per_step / 1e9
    aux_steps = sum(1 for v in stats["aux_loss"] if v != 0.0)
    print(f"matmul fp32 [{n_mm}, {n_mm}] @ [{n_mm}, {n_mm}]: {rate:.1f} GFLOP/s "
          f"(median of 7, mean of before/after training)")
    print(f"train: {per_step * 1e3:.1f} ms/step, {stats['samples_per_s']:,.0f} samples/s, "
          f"final FVU {stats['final_loss']:.3f}, AuxK active on {aux_steps} steps")
    print(f"dense-equivalent 10*B*d*m = {dense / 1e9:.2f} GFLOP/step: {dense_rate:.1f} GFLOP/s "
          f"= {dense_rate / rate:.2f} of the matmul rate (target >= 0.5: "
          f"{'met' if dense_rate / rate >= 0.5 else 'NOT met'})")
    print(f"executed 2*B*d*m + 8*B*k*d = {executed / 1e9:.2f} GFLOP/step: "
          f"{executed_rate:.1f} GFLOP/s = {executed_rate / rate:.2f} of the matmul rate")


if __name__ == "__main__":
    main()
