"""ci/separability.py: task identity probed in the SAE, neuron, weight and random bases."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import separability  # noqa: E402

from clbench.models import create_model  # noqa: E402


def test_per_sample_grad_equals_a_one_sample_autograd_grad() -> None:
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(5,), n_classes=3, hidden=(7, 6)).eval()
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    g = separability.per_sample_grads(model, "fc1", x, y)
    lin = model.body.fc1[0]
    assert g.shape == (4, 7 * 5 + 7)
    for n in range(4):
        w, b = torch.autograd.grad(F.cross_entropy(model(x[n:n + 1]), y[n:n + 1]),
                                   [lin.weight, lin.bias])
        torch.testing.assert_close(g[n], torch.cat([w.reshape(-1), b]), rtol=1e-5, atol=1e-6)


def test_the_random_projection_is_seeded_and_scaled() -> None:
    p = separability.projection(500, 40, seed=3)
    assert p.shape == (500, 40)
    assert torch.equal(p, separability.projection(500, 40, seed=3))
    assert not torch.equal(p, separability.projection(500, 40, seed=4))
    assert abs(float(p.var()) * 40 - 1) < 0.05             # entries N(0, 1 / width)


def test_the_probe_separates_tasks_that_differ_along_one_direction_only() -> None:
    rng = np.random.default_rng(0)
    n, d = 200, 30
    feats = rng.normal(size=(2 * n, d))
    task = np.repeat([0, 1], n)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    planted = feats + 3.0 * task[:, None] * u               # tasks differ only along u
    train, test = separability.probe_split(task, seed=0)
    assert sorted(np.bincount(task[train])) == [n // 2, n // 2]
    assert not set(train) & set(test) and len(train) + len(test) == 2 * n
    assert separability.probe_accuracy(planted, task, train, test) > 0.9
    assert separability.probe_accuracy(feats, task, train, test) < 0.65   # nothing planted


def _args(tmp_path: Path) -> list[str]:
    return ["--streams", "split-digits", "--seeds", "0,1", "--rows", "20", "--sae-steps", "10",
            "--max-samples", "100", "--set", "epochs=1", "--set", "model.hidden=32,32",
            "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "sep.md")]


def test_end_to_end_on_split_digits_writes_a_table_whose_numbers_parse(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert separability.main(_args(tmp_path)) == 0
    text = (tmp_path / "sep.md").read_text()
    assert "paired t-test over seeds, Holm-corrected" in text
    row = next(line for line in text.splitlines() if line.startswith("| split-digits | fc1"))
    cells = re.findall(r"(-?\d+\.\d) ± (\d+\.\d)", row)
    assert len(cells) == 1 + len(separability.BASES)        # model accuracy + one per basis
    assert all(0 <= float(m) <= 100 for m, _ in cells)
    tests = [line for line in text.splitlines() if line.startswith("| split-digits | dense")
             or line.startswith("| split-digits | sparse")]
    assert len(tests) == 2 * len(separability.AGAINST)
    for line in tests:
        holm = float(line.split("|")[7])
        assert 0 <= holm <= 1
    assert "What holds" in text and "Separable in the SAE basis" in text
    capsys.readouterr()
    assert separability.main(_args(tmp_path)) == 0         # resumes from the cached runs
    err = capsys.readouterr().err
    assert err.count("(cached)") == 2 and (tmp_path / "sep.md").read_text() == text


def test_an_unknown_stream_is_one_error_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert separability.main(["--streams", "split-digitz", "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("separability: error: ")
    assert "split-digitz" in err[0] and "split-digits" in err[0]   # with a did-you-mean hint
