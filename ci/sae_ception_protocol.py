"""SAE-ception's own protocol, one task, before any continual learning: does it sharpen features?

    python ci/sae_ception_protocol.py --dataset digits --seeds 0,1,2,3,4 \\
        --out leaderboard/sae-ception-protocol-digits.md
    python ci/sae_ception_protocol.py --dataset fashion-mnist --seeds 0,1,2,3,4 \\
        --out leaderboard/sae-ception-protocol-fmnist.md

The protocol of SAE-ception (NeurIPS 2025 MechInterp workshop; METHODS.md, section 2), on one
task holding every class of a dataset, with the paper's MLP shape (two hidden layers of 16, the
SAE hooked on the first, ``fc1``):

1. ``F_0``: train the model normally for ``--epochs`` epochs (the paper's trained baseline);
2. ``F_1 .. F_C`` (``--cycles``, default 3): each cycle freezes the current model, fits a
   *fresh* SAE on its ``fc1`` activations (v1's MLP dictionary, 16 -> 256 latents; TopK as in
   2.0 with k 4: the plugin's defaults, 4x and k = min(32, 16), would let a class's top 25
   latents keep nearly every active one, i.e. no sharpening on a 16-unit layer), sharpens each
   class's codes to its ``top_n`` strongest latents, and trains ``--cycle-epochs`` epochs with ``task + lam * (1 - cos(h, t))``
   (:class:`clbench.strategies.sae_ception.SAECeptionPlugin`, one cycle per call, inside stock
   Avalanche ``Naive``). Arms, each from the same ``F_0``:

   * ``lam=0``: the same cycles with the auxiliary weight 0, i.e. the same extra epochs of task
     training (the fair control: an effect of the cycles must beat it);
   * ``top N lam=g`` for ``g`` in ``--lams`` (the paper's grid 0.01, 0.1, 0.2, 0.3, 0.5) and
     each ``N`` of ``--top-ns``: v1's 25 latents per class and 2.0's top 1% of the latents;
   * ``random N``: ``sharpen=random`` at ``--control-lam`` (0.1): the same pull toward an SAE
     reconstruction through ``N`` latents per class, the latents drawn at random.

   Every arm sees the same mini-batch order in a cycle (the global RNG is re-seeded from the
   seed and the cycle before each), so arms differ only in the auxiliary term.
3. After ``F_0`` and after every cycle, on the held-out test rows: the accuracy; the
   clustering metrics of a *fresh evaluation SAE* fitted on the layer (TopK, 4x width, k 8,
   300 steps, on at most 4,000 training rows; :func:`clbench.metrics.mono.monosemanticity`:
   silhouette with the labels, Davies-Bouldin, uncertainty coefficient, CSI); and the layer's
   *neurons* directly (:func:`clbench.metrics.mono.neuron_selectivity`: CSI, and U binarised at
   the 75th percentile divided by H(y) as in SAE-ception 2.0 and by H(b) as in v1).

Statistics: for each arm and metric, the final cycle's value against the ``lam=0`` arm's, paired
over seeds (the seed fixes the initialisation, ``F_0`` and the batch order), Student's paired
t-test, Holm-corrected over every test in the table (:mod:`clbench.board.paired`). A claim holds
where Holm p < 0.05 in the claimed direction. Raw per-seed values are written beside the table
(``--json``), and a plot of each metric over the cycles (``--plot``).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATASETS = ("digits", "mnist1d", "fashion-mnist")
#: metric -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("test accuracy", True),
    "mono_silhouette_label": ("SAE silhouette (labels)", True),
    "mono_davies_bouldin": ("SAE Davies-Bouldin", False),
    "mono_uncertainty_coef": ("SAE U", True),
    "mono_csi": ("SAE CSI", True),
    "neuron_csi": ("neuron CSI", True),
    "neuron_u_hy": ("neuron U / H(y) (2.0)", True),
    "neuron_u_hb": ("neuron U / H(b) (v1)", True),
}
EVAL_SAE = {"expansion": 4, "k": 8, "steps": 300, "max_train": 4000}


def one_task_stream(dataset: str, seed: int) -> Any:
    """Every class of ``dataset`` as a single experience (a :class:`clbench.streams.Stream`)."""
    import torch

    from clbench.data import load_dataset
    from clbench.data.base import sha256_of
    from clbench.streams import Stream

    raw = load_dataset(dataset)
    return Stream(name=f"{dataset}-one-task", version="1", scenario="class-il",
                  x_train=raw.x_train, y_train=raw.y_train, x_test=raw.x_test, y_test=raw.y_test,
                  train_idx=[torch.arange(len(raw.y_train))], test_idx=[torch.arange(len(raw.y_test))],
                  classes_per_exp=[list(range(raw.n_classes))], n_classes=raw.n_classes,
                  fingerprint=sha256_of(raw.fingerprint.encode(), b"one-task"), seed=seed)


def measure(model: Any, stream: Any, layer: str, seed: int) -> dict[str, float]:
    """Test accuracy, an evaluation SAE's clustering metrics and the neurons' selectivity."""
    import torch

    from clbench.metrics.mono import monosemanticity, neuron_selectivity
    from clbench.sae.capture import capture
    from clbench.sae.train import SAETrainConfig, train_sae

    model.eval()
    with torch.random.fork_rng(devices=[]):
        with torch.no_grad():
            logits = torch.cat([model(stream.x_test[i:i + 2048])
                                for i in range(0, len(stream.x_test), 2048)])
        acc = float((logits.argmax(1) == stream.y_test).float().mean())
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(stream.y_train), generator=g)[:EVAL_SAE["max_train"]]
        a_tr = capture(model, layer, stream.x_train[rows])
        a_te = capture(model, layer, stream.x_test)
        cfg = SAETrainConfig(n_latents=EVAL_SAE["expansion"] * a_tr.shape[1], k=EVAL_SAE["k"],
                             steps=EVAL_SAE["steps"], batch_size=min(256, len(a_tr)), seed=seed)
        sae, _ = train_sae(a_tr, cfg)
        mono = monosemanticity(sae, a_te, stream.y_test, seed=seed)
    model.train()
    return {"accuracy": acc,
            **{f"mono_{k}": float(v) for k, v in mono.items() if f"mono_{k}" in METRICS},
            **neuron_selectivity(a_te.clamp_min(0), stream.y_test)}


def _strategy(model: Any, plugins: list[Any], epochs: int, lr: float, batch: int) -> Any:
    import torch
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin
    from torch import nn

    return Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
                 criterion=nn.CrossEntropyLoss(), train_mb_size=batch, train_epochs=epochs,
                 plugins=plugins, evaluator=EvaluationPlugin(loggers=[]), device="cpu")


def top_n_of(spec: str, n_latents: int) -> int:
    """``"25"`` -> 25 latents per class; ``"1%"`` -> ``max(1, round(n_latents / 100))`` (2.0)."""
    if spec.endswith("%"):
        return max(1, round(n_latents * float(spec[:-1]) / 100))
    return int(spec)


def protocol_arms(a: argparse.Namespace) -> dict[str, tuple[float, str, int]]:
    """arm name -> (lam, sharpen, top_n): ``lam=0`` (the control), then for each top-N of
    ``--top-ns`` every lam of ``--lams`` and a random-latent control at ``--control-lam``."""
    m = a.expansion * a.hidden[0]
    arms: dict[str, tuple[float, str, int]] = {"lam=0": (0.0, "top", top_n_of(a.top_ns[0], m))}
    for spec in a.top_ns:
        n = top_n_of(spec, m)
        arms.update({f"top {spec} lam={g:g}": (g, "top", n) for g in a.lams})
        arms[f"random {spec} lam={a.control_lam:g}"] = (a.control_lam, "random", n)
    return arms


def run_seed(dataset: str, seed: int, a: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """arm -> the measures after F_0 and after each cycle, for one seed."""
    import torch

    from clbench.models import create_model
    from clbench.run.bridge import Bridge
    from clbench.strategies.sae_ception import SAECeptionConfig, SAECeptionPlugin

    stream = one_task_stream(dataset, seed)
    exp = Bridge(stream).benchmark().train_stream[0]
    torch.manual_seed(seed)
    f0 = create_model("mlp", stream.input_shape, stream.n_classes, hidden=tuple(a.hidden))
    _strategy(f0, [], a.epochs, a.lr, a.batch_size).train(exp)
    base = measure(f0, stream, "fc1", seed)
    arms = protocol_arms(a)
    out: dict[str, list[dict[str, float]]] = {}
    for arm, (lam, sharpen, top_n) in arms.items():
        model, trace = copy.deepcopy(f0), [base]
        for c in range(1, a.cycles + 1):
            cfg = SAECeptionConfig(lam=lam, sharpen=sharpen, cycles=1, cycle_epochs=a.cycle_epochs,
                                   top_n=top_n, sae=a.sae, expansion=a.expansion, k=a.k)
            torch.manual_seed(seed * 1000 + c)      # the same batch order in every arm
            plugin = SAECeptionPlugin("fc1", cfg, seed=seed * 100 + c)   # a fresh SAE per cycle
            _strategy(model, [plugin], 0, a.lr, a.batch_size).train(exp)
            trace.append(measure(model, stream, "fc1", seed))
        out[arm] = trace
    return out


def _fmt(values: list[float]) -> str:
    """``mean ± half-width of the 95% t-interval`` (:func:`clbench.board.rank.ci95`)."""
    from clbench.board.rank import ci95

    v = np.array(values, dtype=float)
    return f"{np.nanmean(v):.4f} ± {ci95(v):.4f}"


def render(dataset: str, per_seed: dict[int, dict[str, list[dict[str, float]]]],
           a: argparse.Namespace, cmd: str) -> str:
    from clbench.board.paired import holm, paired_test

    seeds = sorted(per_seed)
    arms = list(next(iter(per_seed.values())))
    final = {arm: {m: {s: per_seed[s][arm][-1][m] for s in seeds} for m in METRICS} for arm in arms}
    f0 = {m: {s: per_seed[s]["lam=0"][0][m] for s in seeds} for m in METRICS}
    tests = [(arm, m, paired_test(final[arm][m], final["lam=0"][m]))
             for arm in arms if arm != "lam=0" for m in METRICS]
    adj = holm([t.p_value for _, _, t in tests])
    lines = [f"# SAE-ception's protocol on one task: {dataset}", "",
             f"Made by `{cmd}`. One task with every class; MLP {a.hidden} hooked at `fc1`; "
             f"F_0 trained {a.epochs} epochs (SGD lr {a.lr}, momentum 0.9, batch {a.batch_size}); "
             f"then {a.cycles} cycles of {a.cycle_epochs} epoch(s), each with a fresh SAE "
             f"({a.sae}, {a.expansion}x, k {a.k}, 200 steps), cosine aux loss; latents kept per class "
             f"(top_n): {', '.join(f'{t} = {top_n_of(t, a.expansion * a.hidden[0])}' for t in a.top_ns)}. "
             f"Seeds {seeds}. "
             "Metrics on the test rows after the last cycle: a fresh evaluation SAE's codes "
             f"(TopK {EVAL_SAE['expansion']}x, k {EVAL_SAE['k']}, {EVAL_SAE['steps']} steps) "
             "and the layer's neurons. Mean ± 95% t-interval over seeds; **paired t-test over "
             "seeds against the `lam=0` arm (the same extra epochs without the aux term), "
             f"Holm-corrected over the {len(tests)} tests of this table**.", "",
             "| metric | better | F_0 | lam=0 (control) | " + " | ".join(a_ for a_ in arms if a_ != "lam=0") + " |",
             "|---|---|---|---|" + "---|" * (len(arms) - 1)]
    by = {(arm, m): (t, p) for (arm, m, t), p in zip(tests, adj)}
    for m, (label, up) in METRICS.items():
        cells = []
        for arm in arms:
            if arm == "lam=0":
                continue
            t, p = by[(arm, m)]
            vals = list(final[arm][m].values())
            mark = ""
            if p < 0.05:
                mark = " **better**" if (t.diff > 0) == up else " **worse**"
            cells.append(f"{_fmt(vals)} (Δ {t.diff:+.4f}, Holm p {p:.3g}){mark}")
        lines.append(f"| {label} | {'higher' if up else 'lower'} | {_fmt(list(f0[m].values()))} | "
                     f"{_fmt(list(final['lam=0'][m].values()))} | " + " | ".join(cells) + " |")
    wins = [(arm, METRICS[m][0]) for (arm, m), (t, p) in by.items()
            if p < 0.05 and (t.diff > 0) == METRICS[m][1]]
    losses = [(arm, METRICS[m][0]) for (arm, m), (t, p) in by.items()
              if p < 0.05 and (t.diff > 0) != METRICS[m][1]]
    lines += ["", "**What holds** (Holm p < 0.05 against `lam=0`, in the better direction): "
              + ("; ".join(f"{arm}: {lab}" for arm, lab in wins) or "nothing") + ".",
              "", "**Significantly worse**: " + ("; ".join(f"{arm}: {lab}" for arm, lab in losses)
                                                 or "nothing") + "."]
    return "\n".join(lines) + "\n"


def plot(per_seed: dict[int, dict[str, list[dict[str, float]]]], path: str, dataset: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(next(iter(per_seed.values())))
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for ax, (m, (label, up)) in zip(axes.flat, METRICS.items()):
        for arm in arms:
            v = np.array([[c[m] for c in per_seed[s][arm]] for s in per_seed])
            ax.errorbar(range(v.shape[1]), v.mean(0), yerr=v.std(0, ddof=1) if len(v) > 1 else None,
                        label=arm, capsize=2, lw=1)
        ax.set_title(f"{label} ({'↑' if up else '↓'})", fontsize=9)
        ax.set_xlabel("cycle (0 = F_0)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"SAE-ception cycles on {dataset}: mean ± sd over {len(per_seed)} seeds")
    fig.tight_layout()
    from clbench.atomic import write_atomic

    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--lams", default="0.01,0.1,0.2,0.3,0.5")
    ap.add_argument("--control-lam", type=float, default=0.1)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--cycle-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20, help="F_0's epochs")
    ap.add_argument("--hidden", default="16,16")
    ap.add_argument("--top-ns", default="25,1%",
                    help="latents kept per class: v1's N = 25 and 2.0's top 1%% of the latents")
    ap.add_argument("--sae", default="topk", help="the cycles' SAE: topk (2.0) or relu_l1 (v1)")
    ap.add_argument("--expansion", type=int, default=16, help="v1's MLP: 16 -> 256 latents")
    ap.add_argument("--k", type=int, default=4, help="TopK's k (capped at the layer width)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=None, help="Markdown table (default: print it)")
    ap.add_argument("--json", default=None, help="per-seed measures (default: beside --out)")
    ap.add_argument("--plot", default=None, help="PNG of each metric over the cycles (default: beside --out)")
    a = ap.parse_args(argv)
    try:
        if a.dataset not in DATASETS:
            raise ValueError(f"--dataset {a.dataset}: choose one of {', '.join(DATASETS)}")
        seeds = [int(s) for s in a.seeds.split(",")]
        a.lams = [float(g) for g in a.lams.split(",")]
        a.hidden = [int(h) for h in a.hidden.split(",")]
        a.top_ns = [t.strip() for t in a.top_ns.split(",")]
        for t in a.top_ns:
            if not (t.rstrip("%").replace(".", "", 1).isdigit() and float(t.rstrip("%")) > 0):
                raise ValueError(f"--top-ns {t}: give a count (25) or a percentage (1%)")
        if len(set(seeds)) != len(seeds) or len(seeds) < 2:
            raise ValueError(f"--seeds {a.seeds}: give at least 2 distinct seeds")
        if min(a.lams) <= 0 or a.cycles < 1 or a.cycle_epochs < 1 or a.epochs < 1:
            raise ValueError("--lams must be positive; --cycles, --cycle-epochs, --epochs at least 1")
    except ValueError as e:
        print(f"sae_ception_protocol: error: {e}", file=sys.stderr)
        return 2
    import torch

    from clbench.atomic import write_text_atomic
    from clbench.errors import ClbenchError

    torch.set_num_threads(1)
    per_seed: dict[int, dict[str, list[dict[str, float]]]] = {}
    try:
        for s in seeds:
            t0 = time.time()
            per_seed[s] = run_seed(a.dataset, s, a)
            print(f"seed {s}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    except ClbenchError as e:
        print(f"sae_ception_protocol: error: {e}", file=sys.stderr)
        return 2
    cmd = " ".join(["python", "ci/sae_ception_protocol.py", *(argv if argv is not None else sys.argv[1:])])
    stem = Path(a.out).with_suffix("") if a.out else None
    if stem is not None:   # the raw measures first: a rendering problem loses no run
        write_text_atomic(a.json or f"{stem}.json", json.dumps(per_seed, indent=1) + "\n")
    text = render(a.dataset, per_seed, a, cmd)
    if a.out is None or stem is None:
        print(text)
        return 0
    plot(per_seed, a.plot or f"{stem}.png", a.dataset)
    write_text_atomic(a.out, text.replace("\n\n", f"\n\n![metrics over the cycles]({stem.name}.png)\n\n", 1))
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
