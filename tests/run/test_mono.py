"""The SAE-quality / monosemanticity block lands in results without changing the training."""
from __future__ import annotations

import math

import pytest

from clbench import resolve_config, run
from clbench.errors import ClbenchError
from clbench.run.mono import MONO_BLOCK_METRICS
from clbench.board.rank import rank_results
from clbench.results import load_result, write_result
from clbench.streams import Stream

FAST = ["epochs=1"]


def test_block_is_in_the_result_with_directions(digits_stream: Stream, tmp_path) -> None:  # noqa: ANN001
    r = run(resolve_config("split-digits", "replay", "mlp", 0, FAST), stream=digits_stream)
    for name, hib in MONO_BLOCK_METRICS.items():
        assert r.metrics[name]["higher_is_better"] is hib
    assert 0.0 <= r.metric("sae_explained_variance") <= 1.0 + 1e-6
    assert r.metric("sae_l0") == pytest.approx(8.0)          # TopK with the recorded k=8
    assert -1.0 <= r.metric("mono_silhouette_label") <= 1.0
    assert 0.5 <= r.metric("mono_sparse_probe_k5") <= 1.0   # balanced accuracy: chance is 0.5
    data = load_result(write_result(r, tmp_path))
    assert data["config"]["mono"]["k"] == 8 and data["metrics"]["mono_csi"]["value"] is not None


def test_block_does_not_change_what_is_learned(digits_stream: Stream) -> None:
    on = run(resolve_config("split-digits", "replay", "mlp", 1, FAST + ["mono.when=every"]),
             stream=digits_stream)
    off = run(resolve_config("split-digits", "replay", "mlp", 1, FAST + ["mono.when=off"]),
              stream=digits_stream)
    assert on.accuracy_matrix == off.accuracy_matrix
    assert "mono_csi" not in off.metrics
    assert all("mono" in e for e in on.per_experience)       # every experience measured
    assert on.per_experience[-1]["mono"]["mono_csi"] == on.metric("mono_csi")


def test_block_on_another_layer_and_model(digits_stream: Stream) -> None:
    r = run(resolve_config("split-digits", "naive", "cnn", 0, FAST + ["mono.layer=conv2"]),
            stream=digits_stream)
    assert r.status == "ok", r.error
    assert not math.isnan(r.metric("mono_ari"))


def test_rank_by_a_monosemanticity_metric(digits_stream: Stream) -> None:
    results = [run(resolve_config("split-digits", s, "mlp", 0, FAST), stream=digits_stream).to_json()
               for s in ("naive", "replay")]
    for r, label in zip(results, ("naive", "replay")):
        r["label"] = label
    t = rank_results(results, metric="mono_davies_bouldin")   # lower is better
    table = t.per_stream["split-digits"]
    db = table[("mono_davies_bouldin", "mean")]
    assert list(table.index) == list(db.sort_values().index)


@pytest.mark.parametrize("override, fragment", [
    ("mono.when=sometimes", "choose one of end, every, off"),
    ("mono.k=0", "must be at least 1"),
    ("mono.layr=fc1", "did you mean 'mono.layer'"),
])
def test_bad_mono_settings_are_user_errors(override: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment):
        resolve_config("split-digits", "naive", "mlp", 0, [override])


def test_rank_on_a_metric_undefined_for_a_strategy(digits_stream: Stream) -> None:
    """joint has one row of R, so no forgetting: it is listed last with rank '-'."""
    from clbench.board.rank import render
    results = []
    for s in ("joint", "naive", "replay"):
        r = run(resolve_config("split-digits", s, "mlp", 0, FAST + ["mono.when=off"]),
                stream=digits_stream).to_json()
        r["label"] = s
        results.append(r)
    t = rank_results(results, metric="forgetting_max")
    assert list(t.per_stream["split-digits"].index)[-1] == "joint"
    text = render(t, "md")
    assert "|      - | joint" in text or "| -      | joint" in text or "- | joint" in text
