"""How a continual-learning method is registered and turned into an Avalanche strategy.

    from clbench import register_strategy
    from avalanche.training.plugins import EWCPlugin

    @register_strategy("ewc", description="Elastic Weight Consolidation (Avalanche plugin)",
                       defaults={"ewc_lambda": 100.0}, family_defaults={"mnist": {"ewc_lambda": 1000.0}})
    def ewc(p: dict, ctx: BuildContext) -> EWCPlugin:
        return EWCPlugin(ewc_lambda=p["ewc_lambda"], mode="separate")

A *plugin* method returns an Avalanche ``SupervisedPlugin`` that clbench composes onto the stock
``Naive`` template. A *template* method (``kind="template"``) returns a factory of an Avalanche
strategy class, for methods Avalanche ships only as a class (DER, Cumulative, JointTraining).
A name like ``replay+ewc`` composes several methods: any number of plugins and at most one
template. Parameters are typed by their defaults; ``family_defaults`` override the defaults for
one stream family (``embedded``, ``mnist``, ``cifar``); ``check`` validates the resolved values
when a run's config is resolved, so a bad value stops a sweep before its first run.

A plugin may report what it did on each experience (a mask size, its SAE's quality): a method
``experience_record(self) -> dict[str, JSON value]``, called by the runner after each training
experience, whose values are saved in the result as ``per_experience[i]["method"]`` (plugins of
a combination merge their dictionaries, so prefix the keys with the method's name).

Where methods come from: the registry is filled on its first lookup, by importing the built-in
methods (:mod:`clbench.strategies`, the repository's ``strategies/`` folder) and then every entry
point of the group ``clbench.strategies`` that an installed distribution declares. So another
package adds methods by ``pip install`` alone; in its ``pyproject.toml``::

    [project.entry-points."clbench.strategies"]
    my-method = "my_package.my_method"      # a module whose import calls register_strategy

An entry point that fails to import is skipped with a warning naming it and its distribution:
one broken package must not take every other method down.

A method with many settings keeps them in one frozen dataclass (defaults, validation in
``__post_init__``); :func:`cli_defaults` gives the registry's ``defaults`` from it and
:func:`from_params` builds (and so validates) it from resolved parameters. A field with
``metadata={"cli": False}`` (a loss function, say) is not a command-line parameter.
"""
from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Literal, Mapping, TypeVar

from avalanche.core import SupervisedPlugin
from torch import nn

from clbench.errors import ClbenchError
from clbench.names import name_problem
from clbench.registry import Registry
from clbench.streams import Stream

Kind = Literal["plugin", "template"]
C = TypeVar("C")


@dataclass(frozen=True)
class BuildContext:
    """What a method may know when it is built: the stream, the model and the training set-up."""

    stream: Stream
    model: nn.Module
    batch_size: int
    epochs: int
    seed: int
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategySpec:
    """A registered method: its builder, kind and typed default parameters."""

    name: str
    build: Callable[[dict[str, Any], BuildContext], Any]
    kind: Kind
    defaults: dict[str, Any]
    family_defaults: dict[str, dict[str, Any]]
    #: the method trains once on the whole stream (joint training): one row of R
    offline: bool = False
    #: why the method cannot run task-incremental (multi-head); None when it can
    no_task_il: str | None = None
    #: validates resolved parameters (raises ClbenchError), so a bad value fails before any run
    check: Callable[[dict[str, Any]], None] | None = None

    def params_for(self, family: str) -> dict[str, Any]:
        """Default parameters for streams of ``family``."""
        return {**self.defaults, **self.family_defaults.get(family, {})}


#: the entry-point group through which installed packages register methods
ENTRY_POINT_GROUP = "clbench.strategies"


def load_methods() -> None:
    """Import the built-in methods, then every ``clbench.strategies`` entry point."""
    importlib.import_module("clbench.strategies")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001  (another package's code: report, go on)
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            warnings.warn(f"clbench: entry point {ep.name!r} ({ep.value}) of {dist} failed to "
                          f"load and is skipped: {type(e).__name__}: {e}", stacklevel=2)


STRATEGIES: Registry[StrategySpec] = Registry("strategy", loader=load_methods)


def register_strategy(name: str, *, description: str, kind: Kind = "plugin",
                      defaults: dict[str, Any] | None = None,
                      family_defaults: dict[str, dict[str, Any]] | None = None,
                      offline: bool = False,
                      no_task_il: str | None = None,
                      check: Callable[[dict[str, Any]], None] | None = None
                      ) -> Callable[[Callable], Callable]:
    """Decorator registering a method builder ``f(params, ctx) -> plugin | strategy factory``."""
    if "+" in name:
        raise ValueError(f"strategy name {name!r} may not contain '+' (it joins methods)")
    if (why := name_problem(name)) is not None:  # it names a results folder
        raise ValueError(f"strategy name {name!r} {why}")
    defaults = dict(defaults or {})
    fam = {k: dict(v) for k, v in (family_defaults or {}).items()}
    for family, params in fam.items():
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"{name}: family_defaults[{family!r}] has keys without a default: "
                             f"{sorted(unknown)}")

    def deco(fn: Callable) -> Callable:
        spec = StrategySpec(name, fn, kind, defaults, fam, offline, no_task_il, check)
        STRATEGIES.add(name, spec, description=description, kind=kind)
        return fn

    return deco


def parse_combo(name: str) -> list[StrategySpec]:
    """``"replay+ewc"`` -> the specs of its components, validated: known names, no repeats, at
    most one template, and an offline method (joint) only alone."""
    parts = [p.strip() for p in name.split("+")]
    if any(not p for p in parts):
        raise ClbenchError(f"malformed strategy {name!r}; join methods with '+', e.g. 'replay+ewc'")
    if len(set(parts)) != len(parts):
        raise ClbenchError(f"strategy {name!r} names a method twice")
    specs = [STRATEGIES.get(p).obj for p in parts]
    templates = [s.name for s in specs if s.kind == "template"]
    if len(templates) > 1:
        raise ClbenchError(f"strategy {name!r} combines {' and '.join(templates)}, which are whole "
                           f"strategies; combine at most one of them with plugins")
    if len(specs) > 1 and any(s.offline for s in specs):
        raise ClbenchError(f"strategy {name!r}: joint training cannot be combined with other methods")
    return specs


def build_components(specs: list[StrategySpec], params: dict[str, dict[str, Any]],
                     ctx: BuildContext) -> tuple[Callable[..., Any] | None, list[SupervisedPlugin]]:
    """Build every component; returns (template factory or None, plugins in order)."""
    template = None
    plugins: list[SupervisedPlugin] = []
    for s in specs:
        out = s.build(dict(params.get(s.name, {})), ctx)
        if s.kind == "template":
            template = out
        elif out is not None:
            plugins.append(out)
    return template, plugins


# ------------------------------------------------------------------ method configs

def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of config dataclass ``cls`` that are command-line parameters (in order)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def cli_defaults(cls: type) -> dict[str, Any]:
    """``{name: default}`` of ``cls``'s command-line fields: a registry's ``defaults``."""
    out = {f.name: f.default for f in cli_fields(cls)}
    missing = [k for k, v in out.items() if v is dataclasses.MISSING]
    if missing:
        raise TypeError(f"{cls.__name__}: command-line fields need a plain default: {missing}")
    return out


def from_params(cls: type[C], params: Mapping[str, Any]) -> C:
    """``cls`` built from the command-line fields present in ``params`` (other keys, such as a
    method's ``layer``, are ignored); its ``__post_init__`` validates them."""
    return cls(**{f.name: params[f.name] for f in cli_fields(cls) if f.name in params})
