"""ci/separability_lm.py: task identity probed on a language model's SAE, neuron, sketched
weight-gradient and random bases; a tiny random Llama and tiny Debian-format text files.

    $ python -m pytest tests/ci/test_separability_lm.py -q
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))
import separability  # noqa: E402
import separability_lm as lm  # noqa: E402

from clbench.run.config import resolve_config  # noqa: E402
from tests.sae.test_lm_fit import files  # noqa: E402,F401  (the fixture, reused in place)

pytest.importorskip("transformers")

D_MODEL = 32          # the tiny Llama's width (tests.models.conftest.save_tiny_lm)
ROWS_PER_TASK = 4
TINY = ["stream.n_train=2", f"stream.n_test={ROWS_PER_TASK}", "stream.n_prose=3"]


# ------------------------------------------------------------------ the sketch

@pytest.mark.parametrize("nnz", [1, 3])
def test_the_sketch_has_nnz_signed_entries_per_column_one_per_block(nnz: int) -> None:
    s = lm.SparseSketch(50, 12, seed=5, nnz=nnz)
    m = s.matrix()                                              # [12, 50]
    assert m.shape == (12, 50)
    assert torch.all((m != 0).sum(0) == nnz)
    assert torch.allclose(m[m != 0].abs(), torch.full_like(m[m != 0], nnz ** -0.5))
    blocks = [range(j * 12 // nnz, (j + 1) * 12 // nnz) for j in range(nnz)]
    for rows in blocks:                                          # one non-zero in each block
        assert torch.all((m[list(rows)] != 0).sum(0) == 1)
    g = torch.randn(3, 50)
    torch.testing.assert_close(s(g), g @ m.T)
    # one vector given in pieces of any shape: the same as the whole
    torch.testing.assert_close(s.parts([g[0, :6].reshape(2, 3), g[0, 6:]]), s(g[0]))
    assert torch.equal(m, lm.SparseSketch(50, 12, seed=5, nnz=nnz).matrix())
    assert not torch.equal(m, lm.SparseSketch(50, 12, seed=6, nnz=nnz).matrix())
    with pytest.raises(ValueError):
        s(torch.randn(49))


@pytest.mark.parametrize("nnz", [1, 4])
def test_the_sketch_preserves_inner_products_in_expectation(nnz: int) -> None:
    """Over 400 seeded sketches, <Sx, Sy> (and |Sx|^2) has mean <x, y> and variance
    ``(|x|^2 |y|^2 + <x, y>^2 - 2 sum_i x_i^2 y_i^2) / m`` (exact for a block count that divides
    m; at most the docstring's bound), each within 4 of its sampling standard errors."""
    gen = torch.Generator().manual_seed(0)
    dim, width, reps = 3000, 64, 400
    x = torch.randn(dim, generator=gen, dtype=torch.float64)
    y = 0.6 * x + torch.randn(dim, generator=gen, dtype=torch.float64)
    pair = torch.stack([x, y]).float()
    got = []
    for seed in range(reps):
        sx, sy = lm.SparseSketch(dim, width, seed=seed, nnz=nnz)(pair).double()
        got.append((float(sx @ sy), float(sx @ sx)))
    ip, sq = np.array(got).T
    for est, a, b in ((ip, x, y), (sq, x, x)):
        true = float(a @ b)
        var = (float(a @ a) * float(b @ b) + true ** 2 - 2 * float((a * a * b * b).sum())) / width
        assert var <= (float(a @ a) * float(b @ b) + true ** 2) / width
        assert abs(est.mean() - true) < 4 * np.sqrt(var / reps), (est.mean(), true)
        centred = est - est.mean()
        se_var = np.sqrt(max((centred ** 4).mean() - est.var() ** 2, 0.0) / reps)
        assert abs(est.var(ddof=1) - var) < 4 * se_var, (est.var(ddof=1), var, se_var)
    assert 0.4 * x.norm() ** 2 < ip.mean() < 0.8 * x.norm() ** 2     # <x, y> ~ 0.6 |x|^2


def test_a_bad_nnz_is_a_clbench_error() -> None:
    from clbench.errors import ClbenchError

    with pytest.raises(ClbenchError, match="sketch-nnz"):
        lm.SparseSketch(10, 4, seed=0, nnz=5)


# ------------------------------------------------------------------ the bases of a model

@pytest.fixture(scope="module")
def run_parts(files):  # noqa: ANN001, ANN201
    from clbench.run.text import build_text_run

    cfg = resolve_config("text-v1", "naive", "smollm2-135m", seed=0, data_root=str(files["data"]),
                         overrides=[*TINY, f"model.weights={files['lm']}"])
    return build_text_run(cfg)


def test_probe_rows_are_balanced_test_rows_labelled_by_task(run_parts) -> None:  # noqa: ANN001
    _, ts = run_parts
    x, y, task = separability.probe_rows(ts.stream, 100, seed=3)
    assert np.bincount(task).tolist() == [ROWS_PER_TASK] * 6        # all of each small test set
    x2, _, task2 = separability.probe_rows(ts.stream, 3, seed=3)
    assert np.bincount(task2).tolist() == [3] * 6
    s = ts.stream
    for e in range(6):                                  # each row is a test row of its own task
        rows = {tuple(r.flatten().tolist()) for r in s.x_test[s.test_idx[e]]}
        assert all(tuple(r.flatten().tolist()) in rows for r in x2[task2 == e])
    assert bool(((y != lm.IGNORE).sum(1) >= 2).all())    # answer tokens and EOS are targets


def test_row_gradients_are_the_answer_loss_gradients_of_the_trained_part(run_parts) -> None:  # noqa: ANN001
    model, ts = run_parts
    x, y = ts.stream.x_test[:3], ts.stream.y_test[:3]
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731  (no sketch)
    out = lm.row_features(model, "block2", x, y, flat)
    named = lm.trained_params(model)
    dim = sum(p.numel() for _, p in named)
    assert {n.split(".")[3] for n, _ in named if ".layers." in n} == {"2", "3"}
    assert out["weights"].shape == out["weights_pred"].shape == (3, dim)
    for n in range(3):
        assert out["tokens"][n].shape == (int(x[n, 1].sum()), D_MODEL)
        ids, mask = x[n:n + 1, 0], x[n:n + 1, 1]
        logits = model(ids, mask)                             # the full model, [1, T, V]
        pos = x[n, 2].nonzero().squeeze(1)
        target = y[n][y[n] != lm.IGNORE]
        loss = F.cross_entropy(logits[0, pos], target)        # mean over the answer tokens
        ref = flat(torch.autograd.grad(loss, [p for _, p in named]))
        torch.testing.assert_close(out["weights"][n], ref, atol=1e-5, rtol=1e-4)
        pred = logits[0, pos].argmax(-1)
        ref_pred = flat(torch.autograd.grad(F.cross_entropy(model(ids, mask)[0, pos], pred),
                                            [p for _, p in named]))
        torch.testing.assert_close(out["weights_pred"][n], ref_pred, atol=1e-5, rtol=1e-4)
    model.zero_grad(set_to_none=True)


# ------------------------------------------------------------------ the script

@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _args(files: dict[str, Path], tmp_path: Path, *extra: str) -> list[str]:
    return ["--streams", "text-v1", "--model", "smollm2-135m", "--seeds", "0,1",
            "--set", f"model.weights={files['lm']}", *(x for o in TINY for x in ("--set", o)),
            "--sae-steps", "5", "--corpus-passages", "0", "--corpus-glosses", "6",
            "--sketch-nnz", "2", "--data-root", str(files["data"]),
            "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "sep-lm.md"), *extra]


def test_end_to_end_on_the_tiny_lm_writes_a_table_of_every_basis(
        files, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    assert separability.main(_args(files, tmp_path)) == 0
    recs = [json.loads((tmp_path / "runs/text-v1/smollm2-135m/pretrained" / f"seed{s}.json")
                       .read_text()) for s in (0, 1)]
    m = 8 * D_MODEL                                 # the pretrained SAE's width: expansion 8 x d
    for r in recs:
        assert r["layer"] == "block2" and r["width"] == m
        assert r["widths"] == {"sae": m, "sae_f": m, "neurons": D_MODEL, "weights": m,
                               "weights_pred": m, "random": m}
        assert r["rows_per_experience"] == ROWS_PER_TASK and r["n_experiences"] == 6
        assert set(r["probe"]["dense"]) == set(lm.LAYOUT.bases)
        assert all(0 <= v <= 1 for p in r["probe"].values() for v in p.values())
        assert r["sae"]["fingerprint"] == recs[0]["sae"]["fingerprint"]   # one pretrained SAE
    assert not recs[0]["sae"]["reused"] and recs[1]["sae"]["reused"]
    assert len(list(cache.glob("sae/*/sae.pt"))) == 1
    # D: every trained parameter (blocks 2, 3 of 4 and the final norm)
    d, f = D_MODEL, 64
    block = 2 * d * d + 2 * d * (d // 2) + 3 * d * f + 2 * d     # q, o; k, v (2 kv heads); mlp; norms
    assert recs[0]["param_dim"] == 2 * block + d
    text = (tmp_path / "sep-lm.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| text-v1 | block2"))
    cells = re.findall(r"(-?\d+\.\d) ± (\d+\.\d)", row)
    assert len(cells) == len(lm.LAYOUT.bases)
    tests = [line for line in text.splitlines()
             if line.startswith("| text-v1 | dense") or line.startswith("| text-v1 | sparse")]
    assert len(tests) == 2 * len(lm.LAYOUT.against)
    assert all(0 <= float(line.split("|")[7]) <= 1 for line in tests)
    assert "Holm-corrected over all 8 tests" in text and "**Overall.**" in text
    capsys.readouterr()
    assert separability.main(_args(files, tmp_path)) == 0         # resumes from the records
    assert capsys.readouterr().err.count("(cached)") == 2
    assert (tmp_path / "sep-lm.md").read_text() == text


def test_the_naive_state_probes_the_trained_model_on_its_own_rows(
        files, cache: Path, tmp_path: Path) -> None:  # noqa: ANN001
    args = _with(_with(_args(files, tmp_path), "--lm-states", "pretrained,naive"), "--seeds", "0")
    assert separability.main(args) == 0
    runs = tmp_path / "runs/text-v1/smollm2-135m"
    pre, naive = (json.loads((runs / s / "seed0.json").read_text()) for s in ("pretrained", "naive"))
    assert (pre["state"], naive["state"]) == ("pretrained", "naive")
    assert naive["seconds"]["train"] > 0 == pre["seconds"]["train"]
    assert naive["sae"]["fingerprint"] == pre["sae"]["fingerprint"]     # the pretrained SAE
    # the same rows and SAE, another model: the trained block's activations moved
    assert naive["fvu"]["sae"] != pre["fvu"]["sae"]
    text = (tmp_path / "sep-lm.md").read_text()
    assert "| text-v1 | block2" in text and "| text-v1 (naive) | block2" in text
    assert "Holm-corrected over all 16 tests" in text and "of 2 model states" in text


def _with(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced (appended when absent)."""
    if flag not in args:
        return [*args, flag, value]
    i = args.index(flag)
    return [*args[:i + 1], value, *args[i + 2:]]


@pytest.mark.parametrize("flag, value, word", [
    ("--streams", "text-v1,split-digits", "text-v1 makes its own page"),
    ("--lm-states", "trained", "--lm-states"),
    ("--model", "mlp", "language model"),
])
def test_bad_input_is_one_error_line_and_exit_2(files, tmp_path: Path, flag: str, value: str,  # noqa: ANN001
                                                word: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert separability.main(_with(_args(files, tmp_path), flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("separability: error: ") and word in err[0]
    assert not (tmp_path / "sep-lm.md").exists()
