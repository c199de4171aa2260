"""How the text family's training recipe was chosen: one task of text-v1 fitted at a learning rate.

    python ci/lm_recipe.py --lr 1e-3 --epochs 5 --task 3     # WordNet supersense
    python ci/lm_recipe.py --lr 1e-4 --epochs 5 --task 3

Trains the top ``model.train_blocks`` blocks of SmolLM2-135M-Instruct on task ``--task``'s
training rows alone (Adam, batch 16, seeded order, the packed rows and criterion of
:mod:`clbench.run.text`) and prints, per epoch, the mean training loss and the task's test
accuracy (the runner's scoring). The default recipe (``clbench/run/config.py``, family ``text``)
is the one whose training loss reaches a fit within the epoch budget; the test column is printed
for information, not used to choose.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clbench.run.config import resolve_config  # noqa: E402
from clbench.run.text import TextScorer, build_text_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--task", type=int, default=3, help="task number in text-v1 (3: supersense)")
    ap.add_argument("--train-blocks", default="2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=a.seed,
                         overrides=[f"model.train_blocks={a.train_blocks}"])
    model, ts = build_text_run(cfg)
    scorer = TextScorer(ts, model.tokenizer, cfg.train["eval_batch_size"])
    s = ts.stream
    x, y = s.x_train[s.train_idx[a.task]], s.y_train[s.train_idx[a.task]]
    print(f"task {ts.task_names[a.task]}: before training, test accuracy "
          f"{scorer.task_accuracy(model, a.task):.3f}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        losses = []
        for b in torch.randperm(len(x), generator=g).split(cfg.train["batch_size"]):
            loss = nn.CrossEntropyLoss()(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        print(f"epoch {epoch}: training loss {sum(losses) / len(losses):.3f}, test accuracy "
              f"{scorer.task_accuracy(model, a.task):.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
