"""A run's configuration, resolved from registry defaults and typed ``key=value`` overrides.

    >>> cfg = resolve_config("split-digits", "replay+ewc", "mlp", seed=0,
    ...                      overrides=["epochs=3", "ewc.ewc_lambda=50", "model.hidden=200,200"])
    >>> cfg.train["epochs"], cfg.strategy_params["ewc"]["ewc_lambda"], cfg.model_params["hidden"]
    (3, 50.0, (200, 200))

Override keys: a training key (``epochs``, ``batch_size``, ``lr``, ...), ``<method>.<param>`` for
a method in the strategy, ``model.<param>``, ``mono.<param>`` (the SAE/monosemanticity block,
see :mod:`clbench.run.mono`), ``task_incremental``, or ``keep_checkpoints`` (save the model
after each experience, see :mod:`clbench.checkpoints`; it changes no result, so no path tag).
The type of every value is the type of its default; an unknown key or a value of the wrong type is a :class:`ClbenchError`
naming the key and the expected form. The resolved config is saved in every result file.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch

from clbench.errors import ClbenchError
from clbench.models import MODELS, model_options
from clbench.run.mono import MONO_DEFAULTS, check_settings
from clbench.registry import unknown_name_message
from clbench.strategy_api import parse_combo
from clbench.streams import STREAMS

#: training defaults shared by every strategy; ``FAMILY_TRAIN`` overrides them per stream family
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 5, "batch_size": 32, "eval_batch_size": 1000, "optimizer": "sgd",
    "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0,
    # > 0: hold out this fraction of each experience's training rows and evaluate on it instead
    # of the test set (hyperparameter search; see clbench.streams.holdout)
    "validation": 0.0,
    # where training and evaluation run ("cpu", "cuda", "cuda:1"); results are bit-identical
    # across runs on the CPU only
    "device": "cpu",
}
FAMILY_TRAIN: dict[str, dict[str, Any]] = {
    "embedded": {"epochs": 10, "batch_size": 32},
    "mnist": {"epochs": 1, "batch_size": 128},
    "cifar": {"epochs": 5, "batch_size": 128},
    # a pretrained LM's top blocks: Adam, 5 epochs, lr 1e-4: the rate of largest mean validation
    # gain over the tasks (leaderboard/lm-recipe.md, `python ci/lm_recipe.py --validation 0.25`:
    # +0.077 at 1e-4 against +0.023 at 1e-3, whose prose perplexity ratio is 3.48 against 1.18).
    # The text stream's sizes and sequence cap live here too (--set stream.n_train=50)
    "text": {"epochs": 5, "batch_size": 16, "eval_batch_size": 32, "optimizer": "adam",
             "lr": 1e-4, "stream.n_train": 200, "stream.n_test": 100, "stream.n_prose": 64,
             "stream.max_len": 128},
}
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run (stream, model, strategy with parameters, seed)."""

    stream: str
    strategy: str
    model: str
    seed: int
    family: str
    task_incremental: bool
    train: dict[str, Any]
    strategy_params: dict[str, dict[str, Any]]
    model_params: dict[str, Any]
    mono: dict[str, Any] = field(default_factory=lambda: dict(MONO_DEFAULTS))
    data_root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: save the model's state_dict after each experience next to the result (clbench.checkpoints)
    keep_checkpoints: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_params"] = {k: list(v) if isinstance(v, tuple) else v
                             for k, v in self.model_params.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        d["model_params"] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in d.get("model_params", {}).items()}
        return cls(**d)


def parse_value(key: str, text: str, default: Any) -> Any:
    """``text`` converted to the type of ``default``; a mismatch raises ClbenchError."""
    kind = type(default)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ClbenchError(f"--set {key}={text}: must be a finite number "
                                   f"(default {default!r})")
            return value
        if kind is tuple:
            return tuple(int(v) for v in text.split(",") if v.strip())
        if default is None or kind is str:
            return text
    except ValueError:
        pass
    form = {bool: "true or false", int: "an integer", float: "a number",
            tuple: "comma-separated integers, e.g. 400,400"}.get(kind, kind.__name__)
    raise ClbenchError(f"--set {key}={text}: expected {form} (default {default!r})")


def check_method_params(sparams: dict[str, dict[str, Any]]) -> None:
    """Every numeric method parameter (a weight, a size, a temperature) is at least 0: a
    negative one fails only inside training, so it is refused here, before any cell runs."""
    for m, ps in sparams.items():
        for k, v in ps.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ClbenchError(f"--set {m}.{k}={v}: must be at least 0")


def split_override(item: str) -> tuple[str, str]:
    if "=" not in item or not item.split("=", 1)[0].strip():
        raise ClbenchError(f"malformed override {item!r}; write --set key=value, e.g. --set epochs=3")
    k, v = item.split("=", 1)
    return k.strip(), v.strip()


def resolve_config(stream: str, strategy: str, model: str, seed: int = 0,
                   overrides: Iterable[str] = (), data_root: str | None = None,
                   options: dict[str, Any] | None = None) -> RunConfig:
    """Defaults for (stream family, strategy, model) with ``overrides`` applied and checked."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ClbenchError(f"seed {seed!r}: seeds are integers from 0 to 2**32-1, e.g. --seeds 0,1,2")
    family = STREAMS.get(stream).meta["family"]
    text_model = MODELS.get(model).meta.get("input") == "text"
    if text_model != (family == "text"):
        want = STREAMS.get(stream).meta.get("model", "mlp")
        raise ClbenchError(f"model {model!r} {'is a language model' if text_model else 'takes no text'}"
                           f"; stream {stream!r} needs {'a language model' if family == 'text' else 'an image/vector model'}"
                           f": use --model {want}")
    specs = parse_combo(strategy)
    train = {**TRAIN_DEFAULTS, **FAMILY_TRAIN.get(family, {})}
    sparams = {s.name: s.params_for(family) for s in specs}
    mparams = model_options(model)
    fixed_til = STREAMS.get(stream).obj.task_incremental   # e.g. split-fmnist-til
    task_il = fixed_til
    mono = dict(MONO_DEFAULTS)

    keep_ckpt = False
    known = (list(train) + ["task_incremental", "keep_checkpoints"] + [f"model.{k}" for k in mparams]
             + [f"mono.{k}" for k in mono]
             + [f"{m}.{k}" for m, ps in sparams.items() for k in ps])
    for item in overrides:
        key, text = split_override(item)
        if key in train:
            train[key] = parse_value(key, text, train[key])
        elif key == "task_incremental":
            task_il = parse_value(key, text, False)
            if fixed_til and not task_il:
                raise ClbenchError(f"stream {stream!r} is task-incremental by definition; drop "
                                   f"task_incremental=false, or use its class-incremental stream")
        elif key == "keep_checkpoints":
            keep_ckpt = parse_value(key, text, False)
        elif key.startswith("mono.") and key[5:] in mono:
            mono[key[5:]] = parse_value(key, text, mono[key[5:]])
        elif key.startswith("model.") and key[6:] in mparams:
            mparams[key[6:]] = parse_value(key, text, mparams[key[6:]])
        elif "." in key and key.split(".", 1)[0] in sparams and key.split(".", 1)[1] in sparams[key.split(".", 1)[0]]:
            m, k = key.split(".", 1)
            sparams[m][k] = parse_value(key, text, sparams[m][k])
        else:
            raise ClbenchError(unknown_name_message("override key", key, known))
    if train["optimizer"] not in OPTIMIZERS:
        raise ClbenchError(f"--set optimizer={train['optimizer']}: choose one of {', '.join(OPTIMIZERS)}")
    for k in ("epochs", "batch_size", "eval_batch_size"):
        if train[k] < 1:
            raise ClbenchError(f"--set {k}={train[k]}: must be at least 1")
    if not train["lr"] > 0:
        raise ClbenchError(f"--set lr={train['lr']}: must be positive")
    for k in ("momentum", "weight_decay"):
        if not train[k] >= 0:
            raise ClbenchError(f"--set {k}={train[k]}: must be at least 0")
    dev = str(train["device"])
    if dev != "cpu" and not dev.startswith("cuda"):
        raise ClbenchError(f"--set device={dev}: choose cpu or cuda (cuda:N for one GPU of several)")
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ClbenchError(f"--set device={dev}: this machine has no usable CUDA GPU; use --set device=cpu")
    if not 0 <= train["validation"] < 1:
        raise ClbenchError(f"--set validation={train['validation']}: must be in [0, 1), e.g. 0.2")
    check_settings(mono)
    for spec in specs:
        if spec.check is not None:  # a method's own message first, then the generic rule
            spec.check(sparams[spec.name])
    check_method_params(sparams)
    if task_il:
        for spec in specs:
            if spec.no_task_il:
                fix = (f"stream {stream!r} is task-incremental: choose another stream or method"
                       if fixed_til else "drop --task-incremental or the method")
                raise ClbenchError(f"strategy {spec.name!r} cannot run task-incremental: "
                                   f"{spec.no_task_il}; {fix}")
    return RunConfig(stream=stream, strategy=strategy, model=model, seed=int(seed), family=family,
                     task_incremental=bool(task_il), train=train, strategy_params=sparams,
                     model_params=mparams, mono=mono, data_root=data_root, options=dict(options or {}),
                     keep_checkpoints=bool(keep_ckpt))
