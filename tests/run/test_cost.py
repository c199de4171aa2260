"""state_bytes counts the state of a method from any module, by kind, and only its state.

The methods here live in ``foreign_method.py``, a real module written to ``tmp_path`` and
imported under a name outside ``clbench``, ``avalanche`` and ``strategies``, as a ``clbench
submit`` file or a third-party package is; before the walk covered every module they published
``state_bytes = 0``.
"""
from __future__ import annotations

import importlib.util
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from avalanche.training import Naive
from avalanche.training.plugins.evaluation import EvaluationPlugin
from torch import nn

from clbench import resolve_config, run
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.run import cost
from clbench.run.cost import KINDS, STATE_KIND_ATTR, module_bytes, state_bytes, tensor_bytes
from clbench.sae.topk import SAEBase, TopKSAE
from clbench.streams import Stream

FOREIGN = '''
from __future__ import annotations

import copy
import functools
import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from clbench.sae.topk import TopKSAE


class Dictionary:
    """Not a module: a method's own dictionary, declared as SAE state."""

    __clbench_state_kind__ = "sae"

    def __init__(self) -> None:
        self.atoms = torch.zeros(4, 8)                          # 128 bytes
        self.usage = {"fired": np.zeros(4, dtype=np.int64)}     # 32 bytes


class Samples:
    """Looks like a clbench-made dataset to state_bytes: len(), sample_id, targets, logits."""

    def __init__(self, n: int, n_classes: int) -> None:
        self.sample_id = list(range(n))
        self.targets = [0] * n
        self.logits = torch.zeros(n, n_classes)

    def __len__(self) -> int:
        return len(self.targets)


class Slotted:
    __slots__ = ("weights", "unset")

    def __init__(self) -> None:
        self.weights = torch.zeros(10, dtype=torch.float64)    # 80 bytes


class Touchy:
    """Any attribute it lacks raises RuntimeError, not AttributeError (hasattr propagates it)."""

    def __init__(self) -> None:
        self.t = torch.zeros(6)                                 # 24 bytes

    def __len__(self) -> int:
        return 1

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class NoVars:
    """vars() fails on it."""

    @property
    def __dict__(self) -> dict:  # type: ignore[override]
        raise RuntimeError("no")


class Recorder(SupervisedPlugin):
    """Bookkeeping the caller names in skip_plugins."""

    def __init__(self) -> None:
        super().__init__()
        self.log = torch.zeros(1000)


class HoardingPlugin(SupervisedPlugin):
    """Holds one of each kind of state, next to references that are not state."""

    def __init__(self, strategy: Any, recorder: Recorder, n_samples: int) -> None:
        super().__init__()
        model, w = strategy.model, torch.zeros(5, 3)
        # state
        self.anchor = {"w": w}                                  # 60 bytes
        self.anchor_again, self.anchor_view = w, w.view(-1)     # the same memory: counted once
        self.memory = Samples(n_samples, 3)                     # samples + 12 bytes a row
        self.prev_model = copy.deepcopy(model)                  # a model copy
        self.histogram = np.zeros(25)                           # 200 bytes
        self.histogram_as_tensor = torch.from_numpy(self.histogram)  # the same memory
        self.dictionary = Dictionary()                          # 160 bytes of sae
        self.sae = TopKSAE(d_in=4, n_latents=8, k=2)            # an SAE module: sae
        self.slotted = Slotted()                                # 80 bytes
        self.touchy = Touchy()                                  # 24 bytes
        self.queue = deque([torch.zeros(3)])                    # 12 bytes
        self.ns = SimpleNamespace(t=torch.zeros(2, dtype=torch.int16))   # 4 bytes
        self.buffer = torch.utils.data.TensorDataset(torch.zeros(7, 2))  # 56 bytes
        # not state
        self.live, self.head = model, model[0]
        self.live_view = model[0].weight.detach().view(-1)
        self.live_numpy = model[0].bias.detach().numpy()
        self.opt = strategy.optimizer
        self.strategy = strategy
        self.recorder = recorder
        self.gen = (t for t in [torch.zeros(100)])
        self.partial = functools.partial(torch.add, torch.zeros(100))
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=print, args=(torch.zeros(100),))
        self.rng, self.np_rng = torch.Generator(), np.random.default_rng(0)
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(100)))
        self.own_opt = torch.optim.SGD([torch.zeros(100, requires_grad=True)], momentum=0.9)
        self.indices = list(range(100_000))
        self.novars = NoVars()
        self.cycle: list[Any] = []
        self.cycle.append(self.cycle)
        self.me = self
        deep: list[Any] = [torch.zeros(100)]
        for _ in range(10):                                     # below the depth limit
            deep = [deep]
        self.deep = deep


class TrainingPlugin(SupervisedPlugin):
    """After each experience keeps what a method would, replacing the previous experience's."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor: dict[str, torch.Tensor] = {}

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.anchor = {n: p.detach().clone() for n, p in strategy.model.named_parameters()}
        self.prev_model = copy.deepcopy(strategy.model)
        self.memory = strategy.experience.dataset.subset(range(10))
        self.histogram = np.zeros(100, dtype=np.float32)
        self.sae = TopKSAE(d_in=8, n_latents=16, k=2)
        # not state: the strategy's input and handles
        self.exp, self.strategy, self.live = strategy.experience, strategy, strategy.model
        self.current = [strategy.experience]
        self.opt = strategy.optimizer
        self.partial = functools.partial(print, strategy.mb_x)
'''


@pytest.fixture
def foreign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``foreign_method``, imported from a file as ``clbench submit`` imports one."""
    path = tmp_path / "foreign_method.py"
    path.write_text(textwrap.dedent(FOREIGN))
    spec = importlib.util.spec_from_file_location("foreign_method", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "foreign_method", module)
    spec.loader.exec_module(module)
    return module


def _strategy(model: nn.Module, plugins: list[Any]) -> Naive:
    return Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                 criterion=nn.CrossEntropyLoss(), train_mb_size=4, device="cpu",
                 plugins=plugins, evaluator=EvaluationPlugin(loggers=[]))


def test_foreign_plugin_counted_exactly_by_kind(foreign: types.ModuleType) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    mb = module_bytes(model)
    recorder = foreign.Recorder()
    strategy = _strategy(model, [recorder])
    plugin = foreign.HoardingPlugin(strategy, recorder, n_samples=10)
    strategy.plugins.append(plugin)
    assert type(plugin).__module__ == "foreign_method"

    acct = state_bytes(strategy, bytes_per_sample=7, skip_plugins=(foreign.Recorder,))

    assert acct.by_kind == {
        "samples": 10 * 7,
        "tensors": 60 + 10 * 12 + 200 + 80 + 24 + 12 + 4 + 56,
        "model_copies": mb,
        "sae": 128 + 32 + module_bytes(plugin.sae),
    }
    assert acct.total == sum(acct.by_kind.values()) > 0
    assert set(acct.by_kind) == set(KINDS)


def test_sae_modules_declare_their_kind() -> None:
    assert getattr(SAEBase, STATE_KIND_ATTR) == "sae"
    assert cost.declared_kind(TopKSAE(d_in=4, n_latents=8, k=2)) == "sae"
    assert cost.declared_kind(nn.Linear(2, 2)) is None


def test_declared_kind_of_a_module_and_below_an_object(foreign: types.ModuleType) -> None:
    class Frozen(nn.Module):
        __clbench_state_kind__ = "tensors"

        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)                          # 24 bytes

    class Bag:
        __clbench_state_kind__ = "model_copies"

        def __init__(self) -> None:
            self.items = [torch.zeros(3), {"a": np.ones(2, dtype=np.float32)}]   # 12 + 8
            self.inner = foreign.Dictionary()                   # declares sae: 160

    holder = types.SimpleNamespace(frozen=Frozen(), bag=Bag())
    strategy = _strategy(nn.Linear(1, 1), [])
    strategy.holder = holder
    assert state_bytes(strategy, bytes_per_sample=1).by_kind == {
        "samples": 0, "tensors": 24, "model_copies": 20, "sae": 160}


def test_unknown_declared_kind_is_an_error() -> None:
    class Odd:
        __clbench_state_kind__ = "cache"

    strategy = _strategy(nn.Linear(1, 1), [])
    strategy.odd = Odd()
    with pytest.raises(ClbenchError, match="cache"):
        state_bytes(strategy, bytes_per_sample=1)


def test_walk_is_bounded_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    strategy = _strategy(nn.Linear(1, 1), [])
    strategy.plugins.append(types.SimpleNamespace(many=[[torch.zeros(1)] for _ in range(50)]))
    monkeypatch.setattr(cost, "_MAX_VISITS", 11)   # the namespace, its list, 4 or 5 items
    with pytest.warns(RuntimeWarning, match="lower bound"):
        acct = state_bytes(strategy, bytes_per_sample=1)
    assert 0 < acct.by_kind["tensors"] < 50 * 4


def test_foreign_method_in_a_real_run(foreign: types.ModuleType, digits_stream: Stream) -> None:
    """Through the runner: the published per-experience state of a method from outside."""
    plugin = foreign.TrainingPlugin()
    r = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1", "mono.when=off"]),
            stream=digits_stream, extra_plugins=[plugin])
    assert r.status == "ok", r.error
    model = create_model("mlp", digits_stream.input_shape, digits_stream.n_classes)
    mb, pb = module_bytes(model), sum(tensor_bytes(p) for p in model.parameters())
    expected = {"samples": 10 * digits_stream.nbytes_per_sample(), "tensors": pb + 400,
                "model_copies": mb, "sae": module_bytes(plugin.sae)}
    assert len(r.per_experience) == digits_stream.n_experiences
    for entry in r.per_experience:
        assert entry["state_bytes_by_kind"] == expected
        assert entry["state_bytes"] == sum(expected.values()) > 0
