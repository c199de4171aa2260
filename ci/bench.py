"""Benchmarks, measured side by side in one process and reported as ratios.

    python ci/bench.py overhead      # clbench vs a plain PyTorch loop vs stock Avalanche
    python ci/bench.py sae           # TopK SAE training step vs this machine's matmul rate
    python ci/bench.py mono          # the quick suite with the monosemanticity block on vs off
    python ci/bench.py sweep         # one small suite on the local, process and ray executors

``overhead`` runs Naive on split-fmnist with the MLP (1 epoch per experience, batch 128, SGD
lr 0.01 momentum 0.9, the untrained model and then every experience evaluated after each one)
three ways, with the same work in each:

* clbench: ``clbench.run`` on the prebuilt stream (Avalanche's Naive + clbench's data path),
  with the monosemanticity block off so all three do the same work (``bench.py mono`` measures
  the block);
* plain: a PyTorch loop written below over the same tensors;
* stock Avalanche: ``SplitFMNIST`` over torchvision's ``FashionMNIST`` (the Debian files copied
  into a temporary torchvision layout), with clbench's class order for the seed, ``Naive`` and
  Avalanche's accuracy metric.

Data loading/decoding before training is excluded from all three; each is timed from the first
training step to the last evaluation. The order is interleaved over ``--repeats`` rounds and
the median is reported. Targets (issue 2): clbench / plain <= 1.25, stock / clbench >= 4, final
accuracies within 1 point.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
LR, MOMENTUM, BATCH, EVAL_BATCH = 0.01, 0.9, 128, 1000


def time_clbench(seed: int) -> tuple[float, float]:
    from clbench import build_stream, resolve_config, run  # lazy: --help answers without importing torch

    stream = build_stream("split-fmnist", seed=seed)
    cfg = resolve_config("split-fmnist", "naive", "mlp", seed,
                         ["epochs=1", f"batch_size={BATCH}", f"lr={LR}", f"momentum={MOMENTUM}",
                          f"eval_batch_size={EVAL_BATCH}", "mono.when=off"])
    t0 = time.perf_counter()
    r = run(cfg, stream=stream)
    return time.perf_counter() - t0, r.metric("final_accuracy")


def time_plain(seed: int) -> tuple[float, float]:
    """The same work as clbench's run, written as a bare PyTorch loop."""
    from clbench.models import create_model  # lazy: --help answers without importing torch
    from clbench.streams import build_stream  # lazy: --help answers without importing torch

    s = build_stream("split-fmnist", seed=seed)
    torch.manual_seed(seed)
    model = create_model("mlp", s.input_shape, s.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    g = torch.Generator().manual_seed(seed)
    tests = [(s.x_test[i], s.y_test[i]) for i in s.test_idx]

    def evaluate() -> list[float]:
        model.eval()
        accs = []
        with torch.no_grad():
            for x, y in tests:
                correct = sum(int((model(x[i:i + EVAL_BATCH]).argmax(1) == y[i:i + EVAL_BATCH]).sum())
                              for i in range(0, len(y), EVAL_BATCH))
                accs.append(correct / len(y))
        return accs

    t0 = time.perf_counter()
    evaluate()
    row: list[float] = []
    for idx in s.train_idx:
        x, y = s.x_train[idx], s.y_train[idx]
        model.train()
        for b in torch.randperm(len(y), generator=g).split(BATCH):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            loss.backward()
            opt.step()
        row = evaluate()
    return time.perf_counter() - t0, sum(row) / len(row)


def _torchvision_root() -> Path:
    """The Debian Fashion-MNIST files decompressed into torchvision's layout."""
    root = Path(tempfile.mkdtemp(prefix="clbench-fmnist-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FMNIST.glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def time_stock(seed: int, root: Path) -> tuple[float, float]:
    from avalanche.benchmarks.classic import SplitFMNIST  # lazy: --help answers without importing torch
    from avalanche.evaluation.metrics import accuracy_metrics  # lazy: --help answers without importing torch
    from avalanche.training import Naive  # lazy: --help answers without importing torch
    from avalanche.training.plugins import EvaluationPlugin  # lazy: --help answers without importing torch

    from clbench.models import create_model  # lazy: --help answers without importing torch

    from clbench.streams import build_stream  # lazy: --help answers without importing torch

    order = [c for group in build_stream("split-fmnist", seed=seed).classes_per_exp for c in group]
    bm = SplitFMNIST(n_experiences=5, fixed_class_order=order, dataset_root=root, return_task_id=False)
    torch.manual_seed(seed)
    model = create_model("mlp", (1, 28, 28), 10)
    ev = EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[])
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM),
                     criterion=torch.nn.CrossEntropyLoss(), train_mb_size=BATCH, train_epochs=1,
                     eval_mb_size=EVAL_BATCH, device="cpu", evaluator=ev)
    t0 = time.perf_counter()
    strategy.eval(bm.test_stream)
    for exp in bm.train_stream:
        strategy.train(exp, eval_streams=[])
        res = strategy.eval(bm.test_stream)
    elapsed = time.perf_counter() - t0
    return elapsed, float(res["Top1_Acc_Stream/eval_phase/test_stream/Task000"])


def overhead(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench.py overhead")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not FMNIST.exists():
        sys.exit(f"bench.py: error: {FMNIST} missing; apt-get install dataset-fashion-mnist")
    warnings.filterwarnings("ignore")
    root = _torchvision_root()
    times: dict[str, list[float]] = {"clbench": [], "plain": [], "stock": []}
    accs: dict[str, list[float]] = {k: [] for k in times}
    try:
        for rep in range(a.repeats):
            for name, fn in (("plain", lambda: time_plain(a.seed)), ("clbench", lambda: time_clbench(a.seed)),
                             ("stock", lambda: time_stock(a.seed, root))):
                t, acc = fn()
                times[name].append(t)
                accs[name].append(acc)
                print(f"round {rep + 1}: {name:<8} {t:7.2f} s  final accuracy {100 * acc:.2f}%", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    acc = {k: statistics.median(v) for k, v in accs.items()}
    print(f"\nNaive, split-fmnist, MLP, 1 epoch/experience, batch {BATCH}; torch threads "
          f"{torch.get_num_threads()}; median of {a.repeats} rounds")
    for k in ("plain", "clbench", "stock"):
        print(f"  {k:<8} {med[k]:7.2f} s   final accuracy {100 * acc[k]:.2f}%")
    r1, r2 = med["clbench"] / med["plain"], med["stock"] / med["clbench"]
    spread = 100 * (max(acc.values()) - min(acc.values()))
    print(f"  clbench / plain = {r1:.2f}x (target <= 1.25): {'met' if r1 <= 1.25 else 'NOT met'}")
    print(f"  stock / clbench = {r2:.2f}x (target >= 4):    {'met' if r2 >= 4 else 'NOT met'}")
    lo = {k: min(v) for k, v in times.items()}
    print(f"  (fastest rounds: clbench / plain = {lo['clbench'] / lo['plain']:.2f}x, "
          f"stock / clbench = {lo['stock'] / lo['clbench']:.2f}x)")
    print(f"  accuracy spread = {spread:.2f} points (target <= 1): {'met' if spread <= 1 else 'NOT met'}")


def mono(argv: list[str]) -> None:
    """Every cell of the quick suite run twice, interleaved: ``mono.when=off`` and the default
    ``mono.when=end``; prints the total times and their ratio (issue 3 target: <= 1.30)."""
    from clbench import build_stream, resolve_config, run  # lazy: --help answers without importing torch
    from clbench.suites import load_suite  # lazy: --help answers without importing torch

    ap = argparse.ArgumentParser(prog="bench.py mono")
    ap.add_argument("--seeds", default=None, help="comma-separated subset of the suite's seeds")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    suite = load_suite("quick")
    seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else suite.seeds
    total = {"off": 0.0, "end": 0.0}
    block = 0.0
    for st in suite.streams:
        for seed in seeds:
            stream = build_stream(st, seed=seed)
            for strat in suite.strategies:
                for when in ("off", "end"):
                    cfg = resolve_config(st, strat, "mlp", seed, [f"mono.when={when}"])
                    t0 = time.perf_counter()
                    r = run(cfg, stream=stream)
                    total[when] += time.perf_counter() - t0
                    if when == "end":
                        block += r.metric("mono_seconds")
            print(f"{st} seed {seed}: off {total['off']:.1f} s, end {total['end']:.1f} s so far", flush=True)
    ratio = total["end"] / total["off"]
    print(f"\nquick suite ({len(seeds)} seed(s)), torch threads {torch.get_num_threads()}:")
    print(f"  without block {total['off']:.1f} s, with block {total['end']:.1f} s "
          f"(block itself {block:.1f} s)")
    print(f"  ratio = {ratio:.2f}x (target <= 1.30): {'met' if ratio <= 1.30 else 'NOT met'}")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("overhead", "sae", "mono", "sweep"):
        sys.exit("usage: python ci/bench.py {overhead,sae,mono,sweep} [options]")
    verb, rest = sys.argv[1], sys.argv[2:]
    if verb == "overhead":
        overhead(rest)
    elif verb == "mono":
        mono(rest)
    elif verb == "sweep":
        import bench_sweep  # lazy: --help answers without importing torch
        bench_sweep.main(rest)
    else:
        import bench_sae  # lazy: --help answers without importing torch
        bench_sae.main(rest)


if __name__ == "__main__":
    main()
