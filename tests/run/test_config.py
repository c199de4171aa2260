"""Resolving a run's configuration: typed overrides, per-method keys, family defaults."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from clbench.models import model_options
from clbench.run.config import RunConfig, resolve_config
from clbench.errors import ClbenchError
from clbench.strategy_api import STRATEGIES, parse_combo
from clbench.streams import STREAMS


def _get(cfg: RunConfig, key: str) -> Any:
    if key == "task_incremental":
        return cfg.task_incremental
    if key.startswith("model."):
        return cfg.model_params[key[6:]]
    if "." in key:
        method, param = key.split(".", 1)
        return cfg.strategy_params[method][param]
    return cfg.train[key]


@pytest.mark.parametrize("override, expected", [
    ("epochs=3", 3),
    ("batch_size= 16 ", 16),
    ("lr=0.5", 0.5),
    ("lr=1", 1.0),            # an integer literal for a float parameter is a float
    ("momentum=0", 0.0),
    ("optimizer=adam", "adam"),
    ("task_incremental=true", True),
    ("task_incremental=Off", False),
    ("model.hidden=200,100", (200, 100)),
    ("model.hidden=64", (64,)),
    ("model.dropout=0.25", 0.25),
    ("ewc.ewc_lambda=50", 50.0),
])
def test_override_takes_the_type_of_its_default(override: str, expected: Any) -> None:
    key = override.split("=", 1)[0].strip()
    cfg = resolve_config("split-digits", "ewc", "mlp", 0, [override])
    value = _get(cfg, key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("override, fragment", [
    ("epochs=abc", "expected an integer"),
    ("epochs=2.5", "expected an integer"),
    ("lr=fast", "expected a number"),
    ("task_incremental=maybe", "expected true or false"),
    ("model.hidden=wide", "comma-separated integers"),
    ("ewc.ewc_lambda=x", "expected a number"),
])
def test_override_of_the_wrong_type_names_key_and_form(override: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment) as e:
        resolve_config("split-digits", "ewc", "mlp", 0, [override])
    assert f"--set {override}" in str(e.value)


def _other_value(v: Any) -> Any:
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 7
    if isinstance(v, float):
        return v * 2 + 0.5
    raise AssertionError(f"no test value for {v!r}")


@pytest.mark.parametrize("combo", ["replay+ewc", "der+lwf", "agem+si+ewc-online"])
def test_method_keys_reach_exactly_their_component(combo: str) -> None:
    base = resolve_config("split-digits", combo, "mlp", 0)
    specs = parse_combo(combo)
    assert set(base.strategy_params) == {s.name for s in specs}
    for spec in specs:
        assert spec.defaults, f"{spec.name} has no parameter to override"
        for param, default in spec.params_for(base.family).items():
            new = _other_value(default)
            cfg = resolve_config("split-digits", combo, "mlp", 0, [f"{spec.name}.{param}={new}"])
            expected = {m: dict(ps) for m, ps in base.strategy_params.items()}
            expected[spec.name][param] = new
            assert cfg.strategy_params == expected


@pytest.mark.parametrize("key, hint", [
    ("si.si_lambda", "unknown override key 'si.si_lambda'"),   # si is not in the combo
    ("replay.mem", "did you mean 'replay.mem_size'"),
    ("ewc.lambda", "did you mean 'ewc.ewc_lambda'"),
    ("model.hiden", "did you mean 'model.hidden'"),
    ("epoch", "did you mean 'epochs'"),
])
def test_unknown_key_gets_a_hint(key: str, hint: str) -> None:
    with pytest.raises(ClbenchError, match=hint):
        resolve_config("split-digits", "replay+ewc", "mlp", 0, [f"{key}=1"])


@pytest.mark.parametrize("item", ["epochs", "=3", " =3"])
def test_malformed_override(item: str) -> None:
    with pytest.raises(ClbenchError, match="malformed override"):
        resolve_config("split-digits", "naive", "mlp", 0, [item])


def test_family_defaults_differ() -> None:
    fm = resolve_config("split-fmnist", "ewc", "mlp")
    dg = resolve_config("split-digits", "ewc", "mlp")
    assert (fm.family, dg.family) == ("mnist", "embedded")
    assert fm.strategy_params["ewc"]["ewc_lambda"] != dg.strategy_params["ewc"]["ewc_lambda"]
    assert fm.strategy_params["ewc"]["ewc_lambda"] == STRATEGIES.get("ewc").obj.params_for("mnist")["ewc_lambda"]
    assert fm.train["epochs"] != dg.train["epochs"]
    assert (fm.train["epochs"], dg.train["epochs"]) == (1, 10)
    # an override beats the family default
    assert resolve_config("split-fmnist", "ewc", "mlp", 0, ["epochs=4"]).train["epochs"] == 4


def test_the_text_family_has_its_own_ewc_strength() -> None:
    """EWC's lambda on the LM is the text family's validation choice (leaderboard/tuning-lm.md),
    not the image networks' hand-set 100, at which its penalty does not act on the LM."""
    spec = STRATEGIES.get("ewc").obj
    cfg = resolve_config("text-v1", "ewc", "smollm2-135m")
    assert cfg.family == "text"
    assert cfg.strategy_params["ewc"]["ewc_lambda"] == spec.params_for("text")["ewc_lambda"] == 1e5
    assert spec.params_for("text")["ewc_lambda"] != spec.defaults["ewc_lambda"]


@pytest.mark.parametrize("stream", STREAMS.names())
def test_every_stream_resolves_with_its_family(stream: str) -> None:
    model = STREAMS.get(stream).meta["model"]   # mlp; smollm2-135m for a text stream
    cfg = resolve_config(stream, "naive", model)
    assert cfg.family == STREAMS.get(stream).meta["family"]
    assert cfg.model_params == model_options(model)


def test_run_config_round_trips_through_json() -> None:
    cfg = resolve_config("split-digits", "replay+ewc", "mlp", 4,
                         ["epochs=2", "model.hidden=32,16", "ewc.ewc_lambda=5", "task_incremental=1"],
                         data_root="/tmp/data", options={"note": "x"})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["model_params"]["hidden"] == [32, 16]
    back = RunConfig.from_dict(d)
    assert back == cfg
    assert back.model_params["hidden"] == (32, 16) and back.task_incremental is True


@pytest.mark.parametrize("override, fragment", [
    ("epochs=0", "epochs=0: must be at least 1"),
    ("batch_size=0", "batch_size=0: must be at least 1"),
    ("eval_batch_size=-3", "eval_batch_size=-3: must be at least 1"),
    ("lr=-1", "lr=-1.0: must be positive"),
    ("lr=0", "must be positive"),
    ("lr=nan", "must be a finite number"),
    ("optimizer=foo", "choose one of sgd, adam"),
])
def test_invalid_values_are_user_errors(override: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment.replace(".", r"\.")):
        resolve_config("split-digits", "naive", "mlp", 0, [override])


def test_unknown_names_are_user_errors() -> None:
    with pytest.raises(ClbenchError, match="did you mean 'split-fmnist'"):
        resolve_config("split-fmnst", "naive", "mlp")
    with pytest.raises(ClbenchError, match="did you mean 'mlp'"):
        resolve_config("split-digits", "naive", "mpl")


@pytest.mark.parametrize("item, fragment", [
    ("validation=1.0", "must be in [0, 1)"),
    ("validation=-0.1", "must be in [0, 1)"),
    ("device=tpu", "choose cpu or cuda"),
])
def test_bad_validation_or_device(item: str, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=re.escape(fragment)):
        resolve_config("split-digits", "naive", "mlp", 0, [item])


def test_cuda_without_a_gpu_is_a_user_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device=cuda is valid here")
    with pytest.raises(ClbenchError, match="no usable CUDA GPU; use --set device=cpu"):
        resolve_config("split-digits", "naive", "mlp", 0, ["device=cuda"])
