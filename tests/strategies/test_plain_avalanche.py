"""sae-reg and SAE-ception as plain Avalanche plugins: a user's own ``nn.Module`` (layers named by
``named_modules()`` paths), a benchmark built from plain tensors with Avalanche's own
``class_incremental_benchmark``, the stock ``Naive`` strategy, and no clbench machinery (no
Stream, runner, Bridge or FastDataPlugin). The README's script is executed as written. One test
checks that clbench's own data path (Bridge + FastDataPlugin) reads the same rows as the
DataLoader fallback, in the stream's ``train_idx`` order.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from avalanche.benchmarks.scenarios import class_incremental_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import TensorDataset

from clbench.errors import ClbenchError
from clbench.run.bridge import Bridge
from clbench.run.fastdata import FastDataPlugin, experience_rows, sample_rows
from clbench.sae.capture import hook_module
from clbench.strategy_api import cli_defaults
from clbench.streams import Stream
from clbench.strategies.sae_ception import SAECeptionConfig, SAECeptionPlugin
from clbench.strategies.sae_reg import SAERegConfig, SAERegPlugin
from clbench.strategy_api import STRATEGIES

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Using the methods in your own Avalanche script"
N_CLASSES, D, N_EXP = 6, 20, 3


def make_benchmark(seed: int = 0) -> Any:
    """6 Gaussian classes in 20-d from plain tensors; 3 experiences of 2 classes."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(N_CLASSES, D, generator=g)

    def tensors(n: int) -> TensorDataset:
        y = torch.arange(N_CLASSES).repeat_interleave(n)
        return TensorDataset(centers[y] + torch.randn(len(y), D, generator=g), y)

    return class_incremental_benchmark({"train": tensors(60), "test": tensors(20)},
                                       class_order=list(range(N_CLASSES)),
                                       num_experiences=N_EXP)


class Net(nn.Module):
    """Not a clbench model: no ``hook_layers``, ``pools`` or ``forward_features``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(D, 32), nn.Linear(32, 32), nn.Linear(32, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class LossProbe(SupervisedPlugin):
    """Records ``strategy.loss`` at ``before_backward`` per experience (placed between plugins,
    the differences of two probes are what the plugins between them added)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, float]] = []
        self.epochs: list[int] = []   # the epoch within the experience, per logged mini-batch

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        self.log.append((strategy.experience.current_experience, strategy.loss.item()))
        self.epochs.append(strategy.clock.train_exp_epochs)


EPOCHS = 2   # train()'s epochs per experience


def train(plugins: list[SupervisedPlugin], seed: int = 0, epochs: int = EPOCHS) -> nn.Module:
    """Train a fresh ``Net`` with stock ``Naive`` over every experience; returns the model."""
    bm = make_benchmark()
    torch.manual_seed(seed)
    model = Net()
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=epochs,
                     plugins=plugins, evaluator=EvaluationPlugin(loggers=[]), device="cpu")
    for exp in bm.train_stream:
        strategy.train(exp)
        assert not any(type(p).__module__.startswith("clbench.run") for p in strategy.plugins)
    return model


def _reg(**kw: Any) -> SAERegPlugin:
    return SAERegPlugin("fc2", SAERegConfig(sae_steps=30, **kw), seed=0)


def _ception(**kw: Any) -> SAECeptionPlugin:
    return SAECeptionPlugin("fc1", SAECeptionConfig(top_n=8, sae_steps=30, **kw), seed=0)


def test_both_plugins_act_inside_stock_naive() -> None:
    reg, ception = _reg(lam=1.0), _ception(lam=0.5)
    p0, p1, p2 = LossProbe(), LossProbe(), LossProbe()
    with_plugins = train([p0, reg, p1, ception, p2])
    plain = train([])
    # sae-reg: an SAE after experience 0, a non-empty mask from each experience's own data
    assert reg.sae is not None and reg.sae.d_in == 32
    assert len(reg.mask_sizes) == N_EXP and all(n > 0 for n in reg.mask_sizes)
    assert 0 < len(reg.mask_idx) <= reg.sae.n_latents
    # SAE-ception: one fresh SAE per experience, on at most max_samples of its rows
    assert [(f["experience"], f["cycle"]) for f in ception.fits] == [(e, 0) for e in range(N_EXP)]
    assert all(f["rows"] == 2 * 60 for f in ception.fits)
    assert len({f["seed"] for f in ception.fits}) == N_EXP
    assert ception.sae is None and ception.frozen is None   # nothing kept between experiences
    # the terms were added: sae-reg's from experience 1 on (guide "ablate" is a CE, > 0)
    reg_added = [(e, b - a) for (e, a), (_, b) in zip(p0.log, p1.log)]
    aux_added = [b - a for (_, a), (_, b) in zip(p1.log, p2.log)]
    assert len(p0.log) == len(p1.log) == len(p2.log) > 0
    assert all(d == 0 for e, d in reg_added if e == 0)
    assert all(d > 0 for e, d in reg_added if e > 0)
    # SAE-ception's term acts only in the cycle epoch that follows each experience's 2 epochs
    assert set(p1.epochs) == {0, 1, 2}
    ordinary = [d for d, ep in zip(aux_added, p1.epochs) if ep < EPOCHS]
    cycle = [d for d, ep in zip(aux_added, p1.epochs) if ep == EPOCHS]
    assert ordinary and all(d == 0 for d in ordinary)
    assert cycle and all(d >= 0 for d in cycle) and sum(d > 0 for d in cycle) > len(cycle) // 2
    # and they changed training: the weights differ from a run without the plugins
    assert any(not torch.equal(a, b) for a, b in zip(with_plugins.state_dict().values(),
                                                    plain.state_dict().values()))


def test_zero_weights_change_nothing() -> None:
    """With every weight 0 the plugins still fit SAEs, read data and build masks, but training
    is bit-identical to plain Naive run for SAE-ception's epochs (the experience's 2 and its
    cycle's 1): reading data never draws from the global RNG."""
    reg, ception = _reg(lam=0.0, guide_lam=0.0), _ception(lam=0.0)
    zero = train([reg, ception])
    plain = train([], epochs=EPOCHS + ception.config.extra_epochs)
    assert all(reg.mask_sizes) and len(ception.fits) == N_EXP
    for a, b in zip(zero.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)


def test_a_loss_function_is_a_config_field() -> None:
    """sae-reg uses the configured criterion, not the strategy's: a criterion of 0 gives a
    feature-space Fisher of 0, hence empty masks."""
    calls: list[int] = []

    def zero_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(y))
        return 0.0 * logits.sum()

    reg = _reg(criterion=zero_loss)
    train([reg])
    assert calls and reg.mask_sizes == [0] * N_EXP
    with pytest.raises(ClbenchError, match="criterion"):
        SAERegConfig(criterion="ce")   # type: ignore[arg-type]


def test_plain_module_layers_are_module_paths() -> None:
    model = Net()
    assert hook_module(model, "fc2") is model.fc2
    with pytest.raises(ClbenchError, match=r"unknown layer 'fc9'.*known: fc1, fc2, out"):
        hook_module(model, "fc9")


@pytest.mark.parametrize("make, fragment", [
    (lambda: SAERegConfig(q=1.5), "sae-reg.q=1.5: must be in (0, 1]"),
    (lambda: SAERegConfig(rho="both"), "sae-reg.rho=both: choose one of one-sided, two-sided"),
    (lambda: SAERegPlugin("fc2", lam=-1.0), "sae-reg.lam=-1.0: must be >= 0"),
    (lambda: SAECeptionConfig(top_n=0), "sae-ception.top_n=0: must be at least 1"),
    (lambda: SAECeptionPlugin("fc1", aux="l1"), "sae-ception.aux=l1: choose one of cosine, mse"),
])
def test_configs_validate_on_construction(make: Any, fragment: str) -> None:
    with pytest.raises(ClbenchError, match=re.escape(fragment)):
        make()


def test_registry_defaults_are_the_configs_fields() -> None:
    """One source for the parameters: the registry's defaults are the config's CLI fields
    (``criterion`` is not one), and its check builds the config."""
    for name, cls in (("sae-reg", SAERegConfig), ("sae-ception", SAECeptionConfig)):
        spec = STRATEGIES.get(name).obj
        assert spec.defaults == {"layer": "", **cli_defaults(cls)}
        assert "criterion" not in spec.defaults
        spec.check(dict(spec.defaults))
        with pytest.raises(ClbenchError, match=f"{name}.max_samples=0"):
            spec.check({**spec.defaults, "max_samples": 0})


def test_cycles_do_not_depend_on_the_epochs() -> None:
    """3 cycles of 2 epochs after train()'s 2 ordinary epochs: 3 fits per experience, each from
    the model after the ordinary epochs and the cycles before it."""
    ception, probe = _ception(cycles=3, cycle_epochs=2), LossProbe()
    train([probe, ception])
    assert [(f["experience"], f["cycle"]) for f in ception.fits] == [
        (e, c) for e in range(N_EXP) for c in range(3)]
    assert set(probe.epochs) == set(range(EPOCHS + 3 * 2))


def test_bridge_experience_rows_are_the_streams_train_idx_order(digits_stream: Stream) -> None:
    """In clbench runs the plugins read through the Bridge; the rows (and so SAE-ception's
    numbers) are those of the stream's ``x_train[train_idx[e]]``, in that order."""
    s = digits_stream
    bridge = Bridge(s)
    bm = bridge.benchmark()

    class FakeStrategy:   # what experience_rows reads: the experience and the plugins
        def __init__(self, exp: Any, plugins: list[Any]) -> None:
            self.experience, self.plugins = exp, plugins

    for e in (0, s.n_experiences - 1):
        rows = sample_rows(len(s.train_idx[e]), 50, seed=e)
        fast = experience_rows(FakeStrategy(bm.train_stream[e], [FastDataPlugin(bridge, 0)]), rows)
        slow = experience_rows(FakeStrategy(bm.train_stream[e], []), rows)   # DataLoader path
        want = (s.x_train[s.train_idx[e]][rows], s.y_train[s.train_idx[e]][rows])
        for got in (fast, slow):
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_the_readme_script_runs_as_written() -> None:
    text = README.read_text()
    assert SECTION in text, f"README.md lost its section {SECTION!r}"
    block = re.search(r"```python\n(.*?)```", text[text.index(SECTION):], re.S)
    assert block is not None
    ns: dict[str, Any] = {"__name__": "readme_script"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.group(1), "README.md", "exec"), ns)  # noqa: S102  (our own README)
    assert all(ns["sae_reg"].mask_sizes) and len(ns["sae_reg"].mask_sizes) == N_EXP
    assert [f["experience"] for f in ns["sae_ception"].fits] == list(range(N_EXP))
    assert "sae-reg mask sizes per experience" in out.getvalue()
