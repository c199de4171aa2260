"""Streams: how experiences are cut from a dataset, fixed by the seed, and custom builders."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch

import clbench.streams as streams_mod
from clbench.run.config import resolve_config
from clbench.data import load_dataset
from clbench.data.base import RawData
from clbench.streams import STREAMS, Stream, build_stream, register_stream

EMBEDDED = [e.name for e in STREAMS if e.meta.get("embedded")]
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST_DIR.is_dir(),
                                  reason=f"Fashion-MNIST not installed in {FMNIST_DIR} "
                                         "(apt-get install dataset-fashion-mnist)")


@lru_cache(maxsize=None)
def _stream(name: str, seed: int = 0, task_incremental: bool = False) -> Stream:
    return build_stream(name, seed=seed, task_incremental=task_incremental)


def test_embedded_streams_are_registered() -> None:
    assert {"split-digits", "split-mnist1d"} <= set(EMBEDDED)


# --- every embedded stream ----------------------------------------------------------------------

def _contiguous_cover(idx: list[torch.Tensor], n_rows: int) -> None:
    start = 0
    for rows in idx:
        assert len(rows) > 0
        assert torch.equal(rows, torch.arange(start, start + len(rows))), "not a contiguous range"
        start += len(rows)
    assert start == n_rows, "the experiences do not cover the store"


@pytest.mark.parametrize("name", EMBEDDED)
def test_split_partitions_classes_into_contiguous_row_ranges(name: str) -> None:
    s = _stream(name)
    assert s.scenario == "class-il" and s.n_experiences == STREAMS.get(name).obj.n_experiences
    flat = [c for cs in s.classes_per_exp for c in cs]
    assert sorted(flat) == list(range(s.n_classes)), "classes are not partitioned"
    assert len({len(cs) for cs in s.classes_per_exp}) == 1, "experiences differ in size"
    _contiguous_cover(s.train_idx, len(s.y_train))
    _contiguous_cover(s.test_idx, len(s.y_test))
    raw = load_dataset(STREAMS.get(name).obj.dataset)
    # the stores hold every row of the dataset exactly once
    assert torch.equal(s.y_train.sort().values, raw.y_train.sort().values)
    assert torch.equal(s.y_test.sort().values, raw.y_test.sort().values)
    assert len(s.x_train) == len(raw.x_train) and len(s.x_test) == len(raw.x_test)


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_row_has_a_class_of_its_experience(name: str) -> None:
    s = _stream(name)
    for e, classes in enumerate(s.classes_per_exp):
        allowed = torch.tensor(classes)
        for y, idx in ((s.y_train, s.train_idx[e]), (s.y_test, s.test_idx[e])):
            assert bool(torch.isin(y[idx], allowed).all()), f"experience {e} has foreign labels"
        # train and test experiences hold the same classes, all of them
        assert set(s.y_train[s.train_idx[e]].tolist()) == set(classes)
        assert set(s.y_test[s.test_idx[e]].tolist()) == set(classes)


@pytest.mark.parametrize("name", EMBEDDED)
def test_class_order_is_fixed_by_the_seed(name: str) -> None:
    a = _stream(name, 0)
    again = build_stream(name, seed=0)                  # a fresh build, not the cached one
    assert again.classes_per_exp == a.classes_per_exp
    assert again.fingerprint == a.fingerprint
    assert torch.equal(again.x_train, a.x_train) and torch.equal(again.y_test, a.y_test)
    b = _stream(name, 1)
    assert b.classes_per_exp != a.classes_per_exp
    assert b.fingerprint != a.fingerprint


@pytest.mark.parametrize("name", EMBEDDED)
def test_task_incremental_split_labels_tasks(name: str) -> None:
    s = _stream(name, 0, True)
    assert s.scenario == "task-il"
    assert s.task_labels == list(range(s.n_experiences))
    assert _stream(name).task_labels == [0] * s.n_experiences
    # the same experiences, only labelled with their task
    assert s.classes_per_exp == _stream(name).classes_per_exp
    assert torch.equal(s.y_train, _stream(name).y_train)


# --- Fashion-MNIST ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fmnist() -> RawData:
    if not FMNIST_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST not installed in {FMNIST_DIR}")
    return load_dataset("fashion-mnist")


@needs_fmnist
def test_split_fmnist_shape(fmnist: RawData) -> None:
    s = build_stream("split-fmnist", seed=0)
    assert s.n_experiences == 5 and s.n_classes == 10
    assert [len(i) for i in s.train_idx] == [12000] * 5
    assert [len(i) for i in s.test_idx] == [2000] * 5
    assert s.input_shape == (1, 28, 28)
    for e, classes in enumerate(s.classes_per_exp):
        assert set(s.y_train[s.train_idx[e]].tolist()) == set(classes)
        assert set(s.y_test[s.test_idx[e]].tolist()) == set(classes)


N_TRAIN, N_TEST = 600, 200


def _subset(raw: RawData) -> RawData:
    return RawData(raw.name, raw.x_train[:N_TRAIN].clone(), raw.y_train[:N_TRAIN].clone(),
                   raw.x_test[:N_TEST].clone(), raw.y_test[:N_TEST].clone(), raw.n_classes,
                   raw.fingerprint)


def _on_subset(fmnist: RawData, name: str) -> Any:
    """``seed -> build_stream(name, seed)`` on the first rows of the real Fashion-MNIST data.

    The full transformed streams store one copy per experience (perm-fmnist: 2 GB, ~9 s); the
    construction does not depend on the number of rows, so a subset keeps these tests fast
    while using the real data path.
    """
    sub = _subset(fmnist)

    def build(seed: int) -> Stream:
        mp = pytest.MonkeyPatch()
        mp.setattr(streams_mod, "load_dataset", lambda name, **kw: sub)
        try:
            return build_stream(name, seed=seed)
        finally:
            mp.undo()

    return build


@pytest.fixture(scope="module")
def perm_builder(fmnist: RawData) -> Any:
    """``build_stream("perm-fmnist", seed)`` on a subset of the real data (:func:`_on_subset`)."""
    return _on_subset(fmnist, "perm-fmnist")


def _recover_permutation(raw_x: torch.Tensor, perm_x: torch.Tensor) -> list[list[int]]:
    """For each feature ``i`` of ``perm_x`` the raw features ``j`` whose columns equal it over
    every row (``perm_x[:, i] == raw_x[:, P[i]]``); several when raw columns coincide."""
    raw_cols = raw_x.reshape(len(raw_x), -1).T.contiguous()
    perm_cols = perm_x.reshape(len(perm_x), -1).T.contiguous()
    by_key: dict[bytes, list[int]] = {}
    for j, col in enumerate(raw_cols):
        by_key.setdefault(col.numpy().tobytes(), []).append(j)
    return [by_key.get(col.numpy().tobytes(), []) for col in perm_cols]


@needs_fmnist
def test_perm_fmnist_applies_one_permutation_per_experience(fmnist: RawData,
                                                            perm_builder: Any) -> None:
    s = perm_builder(0)
    sub = _subset(fmnist)
    assert s.scenario == "domain-il" and s.n_experiences == 10
    assert s.classes_per_exp == [list(range(10))] * 10
    assert s.task_labels == [0] * 10
    d = 28 * 28
    raw_te = sub.x_test.reshape(N_TEST, d)
    canonical = []
    for e in range(10):
        assert set(s.y_train[s.train_idx[e]].tolist()) == set(range(10))
        assert torch.equal(s.y_train[s.train_idx[e]], sub.y_train)
        assert torch.equal(s.y_test[s.test_idx[e]], sub.y_test)
        cands = _recover_permutation(sub.x_train, s.x_train[s.train_idx[e]])
        assert all(cands), f"experience {e}: a training feature is not a raw feature"
        # the permutation found on the training rows explains every test row
        perm_te = s.x_test[s.test_idx[e]].reshape(N_TEST, d)
        for i, js in enumerate(cands):
            assert any(torch.equal(perm_te[:, i], raw_te[:, j]) for j in js), \
                f"experience {e}: test feature {i} is not permuted like the training rows"
        canonical.append(tuple(c[0] for c in cands))
    assert len(set(canonical)) == 10, "two experiences share a permutation"
    assert all(p != tuple(range(d)) for p in canonical), "an experience is not permuted"


@needs_fmnist
def test_perm_fmnist_permutations_are_fixed_by_the_seed(perm_builder: Any) -> None:
    a, again, b = perm_builder(0), perm_builder(0), perm_builder(1)
    assert torch.equal(a.x_train, again.x_train) and torch.equal(a.x_test, again.x_test)
    assert a.fingerprint == again.fingerprint
    assert b.fingerprint != a.fingerprint
    for e in range(10):
        assert not torch.equal(a.x_train[a.train_idx[e]], b.x_train[b.train_idx[e]])


# --- custom streams -----------------------------------------------------------------------------

def test_register_stream_builder_is_called(digits_stream: Stream, tmp_path: Path) -> None:
    name = "test-tiny-digits"
    calls: list[dict[str, Any]] = []
    try:
        @register_stream(name, description="first two experiences of split-digits",
                         version="0.1", family="embedded", n_experiences=2)
        def tiny(seed: int, data_root: Path | None, task_incremental: bool) -> Stream:
            calls.append({"seed": seed, "data_root": data_root, "task_incremental": task_incremental})
            s = digits_stream
            n_tr, n_te = len(s.train_idx[0]) + len(s.train_idx[1]), len(s.test_idx[0]) + len(s.test_idx[1])
            return Stream(name=name, version="0.1", scenario="task-il" if task_incremental else "class-il",
                          x_train=s.x_train[:n_tr], y_train=s.y_train[:n_tr],
                          x_test=s.x_test[:n_te], y_test=s.y_test[:n_te],
                          train_idx=s.train_idx[:2], test_idx=s.test_idx[:2],
                          classes_per_exp=s.classes_per_exp[:2], n_classes=s.n_classes,
                          fingerprint="tiny-" + s.fingerprint, seed=seed)

        entry = STREAMS.get(name)
        assert entry.meta == {"family": "embedded", "embedded": False}
        assert entry.obj.builder is tiny and entry.obj.version == "0.1"
        s = build_stream(name, seed=7, data_root=tmp_path, task_incremental=True)
        assert calls == [{"seed": 7, "data_root": tmp_path, "task_incremental": True}]
        assert s.n_experiences == 2 and s.task_labels == [0, 1] and s.seed == 7
        assert resolve_config(name, "naive", "mlp", 7).train["epochs"] == 10  # embedded family
        with pytest.raises(ValueError, match="registered twice"):
            register_stream(name, description="again", version="0.2")(tiny)
    finally:
        STREAMS._entries.pop(name, None)
    assert name not in STREAMS


def test_holdout_splits_each_experiences_training_rows(digits_stream: Stream) -> None:
    from clbench.streams import holdout

    s = digits_stream
    h = holdout(s, 0.2, seed=3)
    assert h.n_experiences == s.n_experiences and h.fingerprint != s.fingerprint
    for e in range(s.n_experiences):
        n = len(s.train_idx[e])
        assert len(h.test_idx[e]) == round(0.2 * n) and len(h.train_idx[e]) + len(h.test_idx[e]) == n
        rows = lambda x, idx: sorted(map(tuple, x[idx].reshape(len(idx), -1).tolist()))  # noqa: E731
        both = sorted(rows(h.x_train, h.train_idx[e]) + rows(h.x_test, h.test_idx[e]))
        assert both == rows(s.x_train, s.train_idx[e])        # a partition of the experience
        assert set(h.y_test[h.test_idx[e]].tolist()) <= set(s.classes_per_exp[e])
    again = holdout(s, 0.2, seed=3)
    assert torch.equal(again.x_test, h.x_test) and not torch.equal(holdout(s, 0.2, 4).y_test, h.y_test)


def test_a_validation_run_never_reads_the_test_set(digits_stream: Stream) -> None:
    """The test store is replaced by NaNs: a run with validation>0 must not see them."""
    import dataclasses

    from clbench import resolve_config, run

    poisoned = dataclasses.replace(digits_stream, x_test=torch.full_like(digits_stream.x_test, float("nan")))
    cfg = resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1", "validation=0.2", "mono.when=off"])
    r = run(cfg, stream=poisoned)
    assert r.status == "ok", r.error
    assert r.metric("final_accuracy") > 0.15          # NaN inputs would score at chance at best
    test = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1", "mono.when=off"]),
               stream=poisoned)
    assert test.accuracy_matrix != r.accuracy_matrix


# --- rotated and fixed task-incremental streams (cpu-v2) ---------------------------------------

def test_rotation_by_90_degrees_is_a_quarter_turn_and_0_is_identity() -> None:
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(streams_mod.rotate_images(x, 90.0, 0.0),
                               torch.rot90(x, 1, dims=(2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(streams_mod.rotate_images(x, 0.0, 0.5), x, atol=1e-5, rtol=0)
    # the corners of a 45-degree turn have no source pixel: they get the fill value
    r = streams_mod.rotate_images(torch.zeros(1, 1, 28, 28) + 3.0, 45.0, -0.8)
    assert r[0, 0, 0, 0].item() == pytest.approx(-0.8) and r[0, 0, 14, 14].item() == pytest.approx(3.0)


def test_rotation_angles_are_seeded_and_in_range() -> None:
    a = streams_mod.rotation_angles(0, 5)
    assert a == streams_mod.rotation_angles(0, 5) != streams_mod.rotation_angles(1, 5)
    assert len(a) == 5 and all(0 <= v < 180 for v in a)


@pytest.fixture(scope="module")
def rot_builder(fmnist: RawData) -> Any:
    """``build_stream("rot-fmnist", seed)`` on a subset of the real data (:func:`_on_subset`)."""
    return _on_subset(fmnist, "rot-fmnist")


@needs_fmnist
def test_rot_fmnist_rotates_every_experience_by_its_seeded_angle(fmnist: RawData,
                                                                 rot_builder: Any) -> None:
    s, sub = rot_builder(0), _subset(fmnist)
    angles = streams_mod.rotation_angles(0, 5)
    assert s.scenario == "domain-il" and s.n_experiences == 5 and s.task_labels == [0] * 5
    assert s.classes_per_exp == [list(range(10))] * 5
    fill = float(sub.x_train.min())
    for e, a in enumerate(angles):
        assert torch.equal(s.y_train[s.train_idx[e]], sub.y_train)
        torch.testing.assert_close(s.x_train[s.train_idx[e]], streams_mod.rotate_images(sub.x_train, a, fill))
        torch.testing.assert_close(s.x_test[s.test_idx[e]], streams_mod.rotate_images(sub.x_test, a, fill))
        # a turn keeps the image's ink roughly: the mean pixel moves little
        assert abs(float(s.x_train[s.train_idx[e]].mean() - sub.x_train.mean())) < 0.15
    other = rot_builder(1)
    assert other.fingerprint != s.fingerprint and rot_builder(0).fingerprint == s.fingerprint


def test_a_task_incremental_stream_is_so_whatever_the_flag() -> None:
    """split-fmnist-til is registered task-incremental: its config has task_incremental set,
    a multi-head model, and the flag cannot switch it off; methods that cannot run
    task-incremental are refused, naming the stream."""
    from clbench.errors import ClbenchError

    assert STREAMS.get("split-fmnist-til").obj.task_incremental
    cfg = resolve_config("split-fmnist-til", "ewc", "mlp", 0)
    assert cfg.task_incremental
    assert not resolve_config("split-fmnist", "ewc", "mlp", 0).task_incremental
    with pytest.raises(ClbenchError, match="is task-incremental by definition"):
        resolve_config("split-fmnist-til", "ewc", "mlp", 0, ["task_incremental=false"])
    with pytest.raises(ClbenchError, match="stream 'split-fmnist-til' is task-incremental"):
        resolve_config("split-fmnist-til", "der", "mlp", 0)


@needs_fmnist
def test_split_fmnist_til_has_task_labels(fmnist: RawData) -> None:
    s = _on_subset(fmnist, "split-fmnist-til")(0)
    assert s.scenario == "task-il" and s.task_labels == [0, 1, 2, 3, 4]
    assert s.classes_per_exp == build_stream("split-fmnist", seed=0).classes_per_exp


#: the fingerprints every committed result of these streams carries (seed 0): a change to how a
#: stream is made or hashed (a new StreamSpec field in its repr, say) must not move them silently
PINNED_FINGERPRINTS = {
    "split-digits": "2318bc14be82e3b33d7039ba434dfa31fd8481f9f116c9ad96bbd6bf296d67cd",
    "split-mnist1d": "3b8ac34ce006988c0f31737cdcea50c90f04cc396d2a1442d359931bf8dff376",
}


@pytest.mark.parametrize("name", sorted(PINNED_FINGERPRINTS))
def test_fingerprints_of_the_committed_streams_do_not_move(name: str) -> None:
    assert _stream(name).fingerprint == PINNED_FINGERPRINTS[name]


def test_committed_results_carry_the_fingerprint_their_stream_has_today() -> None:
    """Every committed cpu-v1 result of an embedded stream was made on the data and construction
    the stream has now (the same check ``clbench submit`` makes against the leaderboard)."""
    import json

    root = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
    for name in PINNED_FINGERPRINTS:
        files = sorted((root / name).rglob("seed*.json"))
        assert files, f"no committed results for {name}"
        for f in files:
            data = json.loads(f.read_text())
            seed = int(data["config"]["seed"])
            assert data["stream"]["fingerprint"] == _stream(name, seed).fingerprint, f
