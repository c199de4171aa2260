"""SAE-ception: the gradient reaches the model below the hook, the sharpened targets match a
hand computation, the targets come from a model trained on the experience (cycles run after
its ordinary epochs, as many as asked whatever the epochs), and the plugin runs inside real
Avalanche strategies, composed with the others."""
from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from avalanche.core import SupervisedPlugin

from clbench import resolve_config, run
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.sae.capture import LayerTap
from clbench.sae.topk import TopKSAE
from clbench.strategy_api import BuildContext, STRATEGIES
from clbench.streams import Stream
from clbench.strategies import sae_ception as sae_ception_module
from clbench.strategies.sae_ception import SAECeptionPlugin, class_feature_masks, sharpened_targets

#: small SAE settings so a run takes a second or two
FAST = ["epochs=1", "sae-ception.sae_steps=10", "sae-ception.expansion=1"]


def _plugin(stream: Stream, **kw: object) -> SAECeptionPlugin:
    ctx = BuildContext(stream=stream, model=create_model("mlp", stream.input_shape,
                                                         stream.n_classes),
                       batch_size=32, epochs=1, seed=0)
    p = {**STRATEGIES.get("sae-ception").obj.defaults, "sae_steps": 10, **kw}
    return STRATEGIES.get("sae-ception").obj.build(p, ctx)


@pytest.mark.parametrize("aux", ["cosine", "mse"])
def test_aux_gradient_reaches_layers_below_the_hook_only(digits_stream: Stream, aux: str) -> None:
    torch.manual_seed(0)
    s = digits_stream
    model = create_model("mlp", s.input_shape, s.n_classes)
    plugin = _plugin(s, aux=aux)
    assert plugin.layer == "fc1"
    rows = s.train_idx[0]
    plugin.fit(model, s.x_train[rows], s.y_train[rows], seed=0)
    with torch.no_grad():  # move the live model away from the frozen copy: targets != h
        for prm in model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    x, y = s.x_train[rows[:32]], s.y_train[rows[:32]]
    with LayerTap(model, "fc1") as tap:
        model(x)
        term = plugin.aux_term(tap.out, x, y)
    assert term is not None and term.item() > 0
    term.backward()
    fc1 = model.body.fc1[0]
    assert fc1.weight.grad is not None and fc1.weight.grad.abs().sum() > 0
    assert fc1.bias.grad is not None and fc1.bias.grad.abs().sum() > 0
    for above in (model.body.fc2[0], model.head):
        assert all(q.grad is None or not q.grad.any() for q in above.parameters())
    assert all(q.grad is None for q in plugin.sae.parameters())      # targets are constants
    assert all(q.grad is None for q in plugin.frozen.parameters())


def test_samples_of_classes_without_features_get_no_aux(digits_stream: Stream) -> None:
    s = digits_stream
    model = create_model("mlp", s.input_shape, s.n_classes)
    plugin = _plugin(s)
    plugin.fit(model, s.x_train[s.train_idx[0]], s.y_train[s.train_idx[0]], seed=0)
    old = s.train_idx[1][:8]                       # classes of experience 1: no S_c
    with LayerTap(model, "fc1") as tap:
        model(s.x_train[old])
        assert plugin.aux_term(tap.out, s.x_train[old], s.y_train[old]) is None


def test_sharpened_targets_by_hand() -> None:
    # d=3, m=4, k=2; encoder rows e1, e2, e3, e1+e2; decoder rows e1, e2, e3, (0, .6, .8)
    sae = TopKSAE(3, 4, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [0, .6, .8]]))
        sae.b_pre.copy_(torch.tensor([.5, 0, 0]))
    sae.eval()
    x = torch.tensor([[2.5, 1, 0], [1.5, .5, 3],      # class 0
                      [4.5, -1, 1], [1.5, 2, .5]])    # class 1
    y = torch.tensor([0, 0, 1, 1])
    # pre = W_enc (x - b_pre): [2,1,0,3], [1,.5,3,1.5], [4,-1,1,3], [1,2,.5,3]; top-2 codes:
    codes = sae.encode(x)
    torch.testing.assert_close(codes, torch.tensor([[2., 0, 0, 3], [0, 0, 3, 1.5],
                                                    [4, 0, 0, 3], [0, 2, 0, 3]]))
    # class means [1, 0, 1.5, 2.25] -> S_0 = {2, 3};  [2, 1, 0, 3] -> S_1 = {0, 3}
    masks, has = class_feature_masks(codes, y, top_n=2, n_classes=3)
    assert masks.tolist() == [[False, False, True, True], [True, False, False, True],
                              [False] * 4]
    assert has.tolist() == [True, True, False]
    # t = W_dec (z * 1[S_y]) + b_pre: sample 1 keeps latent 3 only, sample 4 loses latent 1
    expected = torch.tensor([[0.5, 1.8, 2.4],    # 3 * (0,.6,.8) + b_pre
                             [0.5, 0.9, 4.2],    # 3 * e3 + 1.5 * (0,.6,.8) + b_pre
                             [4.5, 1.8, 2.4],    # 4 * e1 + 3 * (0,.6,.8) + b_pre
                             [0.5, 1.8, 2.4]])   # 3 * (0,.6,.8) + b_pre
    torch.testing.assert_close(sharpened_targets(sae, x, y, masks), expected)


def test_random_sharpening_is_the_control_of_the_same_size() -> None:
    """sharpen=random keeps top_n latents per class, seeded, independent of the codes."""
    codes = torch.zeros(40, 64)
    codes[:20, :5] = 3.0       # class 0's strongest latents are 0..4
    codes[20:, 5:10] = 3.0     # class 1's are 5..9
    y = torch.tensor([0] * 20 + [1] * 20)
    top, _ = class_feature_masks(codes, y, top_n=5, n_classes=2)
    assert top[0, :5].all() and top[1, 5:10].all()
    rnd, has = class_feature_masks(codes, y, top_n=5, n_classes=2, sharpen="random", seed=3)
    assert rnd.sum(dim=1).tolist() == [5, 5] and has.tolist() == [True, True]
    assert not torch.equal(rnd, top)
    again, _ = class_feature_masks(codes * 0, y, top_n=5, n_classes=2, sharpen="random", seed=3)
    assert torch.equal(again, rnd)                              # seeded, not read from the codes
    other, _ = class_feature_masks(codes, y, top_n=5, n_classes=2, sharpen="random", seed=4)
    assert not torch.equal(other, rnd)


@pytest.mark.parametrize("name, extra", [
    ("sae-ception", []),
    ("sae-ception+replay", []),
    ("sae-ception", ["epochs=2", "sae-ception.cycles=2", "sae-ception.aux=mse"]),
    ("sae-ception+replay", ["sae-ception.sae=relu_l1"]),
])
def test_runs_in_avalanche_strategies(digits_stream: Stream, name: str, extra: list[str]) -> None:
    r = run(resolve_config("split-digits", name, "mlp", 0, FAST + extra + ["mono.when=off"]),
            stream=digits_stream)
    assert r.status == "ok", r.error
    T = digits_stream.n_experiences
    assert len(r.accuracy_matrix) == T and all(len(row) == T for row in r.accuracy_matrix)
    if name == "sae-ception":
        assert r.metric("state_bytes") == 0   # the SAE and frozen copy are dropped each time


def test_each_cycle_refits_from_the_current_model(digits_stream: Stream,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    fit = SAECeptionPlugin.fit

    def counting_fit(self: SAECeptionPlugin, *args: object, **kw: object) -> object:
        calls.append(int(kw["seed"]))
        return fit(self, *args, **kw)

    monkeypatch.setattr(SAECeptionPlugin, "fit", counting_fit)
    r = run(resolve_config("split-digits", "sae-ception", "mlp", 0,
                           FAST + ["epochs=3", "sae-ception.cycles=2", "mono.when=off"]),
            stream=digits_stream)
    assert r.status == "ok", r.error
    T = digits_stream.n_experiences
    assert calls == [100 * e + c for e in range(T) for c in range(2)]   # fresh seed per cycle


def test_zero_cycles_equal_naive_and_lam_zero_is_naive_with_the_cycle_epochs(
        digits_stream: Stream) -> None:
    """``cycles=0`` is naive exactly; ``lam=0`` is naive trained ``epochs + cycles *
    cycle_epochs`` epochs (bit-identical: the cycle epochs run in the template's own loop, with
    its loader and shuffling generator, and the SAE fits draw no training randomness)."""
    off = ["mono.when=off"]

    def sae_ception(*extra: str):  # noqa: ANN202
        return run(resolve_config("split-digits", "sae-ception", "mlp", 1, FAST + off + list(extra)),
                   stream=digits_stream)

    def naive(epochs: int):  # noqa: ANN202
        return run(resolve_config("split-digits", "naive", "mlp", 1, [f"epochs={epochs}"] + off),
                   stream=digits_stream)

    none = sae_ception("sae-ception.cycles=0")
    zero = sae_ception("sae-ception.lam=0", "sae-ception.cycles=2")   # 1 + 2 * 1 epochs
    default = sae_ception("sae-ception.cycles=2")
    assert none.accuracy_matrix == naive(1).accuracy_matrix
    assert [p["method"]["sae_ception_cycles"] for p in none.per_experience] == [0] * 5
    naive3 = naive(3)
    assert zero.accuracy_matrix == naive3.accuracy_matrix
    assert default.accuracy_matrix != naive3.accuracy_matrix   # the aux term does act


@pytest.mark.parametrize("override, fragment", [
    ("sae-ception.aux=l1", "choose one of cosine, mse"),
    ("sae-ception.sae=gated", "choose one of topk, relu_l1"),
    ("sae-ception.top_n=0", "top_n=0: must be at least 1"),
    ("sae-ception.cycles=-1", "cycles=-1: must be at least 0"),
    ("sae-ception.cycle_epochs=0", "cycle_epochs=0: must be at least 1"),
    ("sae-ception.layer=fc9", "unknown layer 'fc9'"),
])
def test_bad_parameters_are_user_errors(digits_stream: Stream, override: str,
                                        fragment: str) -> None:
    with pytest.raises(ClbenchError, match=fragment):
        run(resolve_config("split-digits", "sae-ception", "mlp", 0, ["epochs=1", override]),
            stream=digits_stream)


@pytest.mark.parametrize("model, layer", [
    ("cnn", "fc"), ("vit", "cls"), ("vit", "block2"), ("convnextv2", "head"),
])
def test_runs_on_every_model_family_layer(digits_stream: Stream, model: str, layer: str) -> None:
    """The issue's layers: CNN features, the ViT CLS token and a block, ConvNeXt-V2's head."""
    from clbench import resolve_config, run

    cfg = resolve_config("split-digits", "sae-ception", model, 0,
                         ["epochs=1", "batch_size=128", "mono.when=off", f"sae-ception.layer={layer}",
                          "sae-ception.sae_steps=5", "sae-ception.expansion=1"])
    r = run(cfg, stream=digits_stream)
    assert r.status == "ok", r.error
    assert len(r.accuracy_matrix) == digits_stream.n_experiences


# --------------------------------------------------- targets from a trained model, cycles


class EpochProbe(SupervisedPlugin):
    """Per experience: epochs begun, each mini-batch's labels with its epoch, the strategy's
    ``train_epochs`` after the experience, and the model's weights after it."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.batches: list[tuple[int, int, list[int]]] = []   # (experience, epoch, labels)
        self.train_epochs: list[int] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.epochs.append(0)

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self.epochs[-1] += 1

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        self.batches.append((strategy.experience.current_experience, self.epochs[-1] - 1,
                             strategy.mb_y.tolist()))

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.train_epochs.append(strategy.train_epochs)
        self.weights.append({k: v.detach().clone() for k, v in strategy.model.state_dict().items()})


def test_targets_come_from_a_model_trained_on_the_experience(
        digits_stream: Stream, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the first SAE of experience 0 used to be fitted on the random network (its
    accuracy on the experience's rows 0.003; chance within the experience is 0.5). Now the
    frozen copy F_0 is the model after the experience's ordinary epochs: naive's weights after
    experience 0, exactly, and well above chance on the rows it is fitted on."""
    seen: list[tuple[SAECeptionPlugin, float, dict[str, torch.Tensor]]] = []
    fit = SAECeptionPlugin.fit

    def spy(self: SAECeptionPlugin, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> Any:
        with torch.no_grad():   # measured here, independently of the plugin's own log
            was = model.training
            acc = float((model.eval()(x).argmax(1) == y).float().mean())
            model.train(was)
        seen.append((self, acc, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return fit(self, model, x, y, seed=seed)

    monkeypatch.setattr(SAECeptionPlugin, "fit", spy)
    off = ["mono.when=off"]
    r = run(resolve_config("split-digits", "sae-ception", "mlp", 0, FAST + off),
            stream=digits_stream)
    assert r.status == "ok", r.error
    naive_probe = EpochProbe()
    naive = run(resolve_config("split-digits", "naive", "mlp", 0, ["epochs=1"] + off),
                stream=digits_stream, extra_plugins=[naive_probe])
    assert naive.status == "ok", naive.error
    plugin, acc0, weights0 = seen[0]
    assert acc0 > 0.9, f"F_0 of experience 0 is at {acc0:.3f} on the experience's own rows"
    for k, v in naive_probe.weights[0].items():   # F_0 = the model after the ordinary epoch
        assert torch.equal(weights0[k], v), k
    # the public log records the same accuracy, and the runner saves it per experience
    assert [f["accuracy"] for f in plugin.fits] == pytest.approx([a for _, a, _ in seen])
    assert r.per_experience[0]["method"]["sae_ception_pre_cycle_accuracy"] == \
        pytest.approx([acc0])


def test_cycles_do_not_depend_on_the_epochs(digits_stream: Stream,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``cycles=3`` with ``epochs=1`` (the MNIST family's setting; refused before): each
    experience trains 1 ordinary epoch, then 3 cycles of ``cycle_epochs=2`` epochs; the aux term
    acts in the 6 cycle epochs only, each cycle refits the SAE, and ``train_epochs`` is restored
    after the experience."""
    aux_calls: list[int] = []
    aux_values: list[float] = []
    aux_term = SAECeptionPlugin.aux_term

    def counting(self: SAECeptionPlugin, h: torch.Tensor, x: torch.Tensor,
                 y: torch.Tensor) -> Any:
        aux_calls.append(len(y))
        out = aux_term(self, h, x, y)
        aux_values.append(float(out))
        return out

    monkeypatch.setattr(SAECeptionPlugin, "aux_term", counting)
    probe = EpochProbe()
    r = run(resolve_config("split-digits", "sae-ception", "mlp", 0,
                           FAST + ["mono.when=off", "sae-ception.cycles=3",
                                   "sae-ception.cycle_epochs=2"]),
            stream=digits_stream, extra_plugins=[probe])
    assert r.status == "ok", r.error
    T, bs = digits_stream.n_experiences, 32
    assert probe.epochs == [1 + 3 * 2] * T and probe.train_epochs == [1] * T
    batches = sum(math.ceil(len(digits_stream.train_idx[e]) / bs) for e in range(T))
    assert len(aux_calls) == 3 * 2 * batches            # no aux term in the ordinary epoch
    for e, entry in enumerate(r.per_experience):
        m = entry["method"]
        assert m["sae_ception_cycles"] == 3
        assert len(m["sae_ception_fvu"]) == 3 and all(0 <= v < 1.5 for v in m["sae_ception_fvu"])
        assert len(m["sae_ception_pre_cycle_accuracy"]) == 3
        assert all(0 <= a <= 1 for a in m["sae_ception_pre_cycle_accuracy"])
    assert r.per_experience[0]["method"]["sae_ception_pre_cycle_accuracy"][0] > 0.9
    # each cycle's mean aux term is the mean of the terms its steps added (cosine: in [0, 2])
    steps0 = 2 * math.ceil(len(digits_stream.train_idx[0]) / bs)
    first = r.per_experience[0]["method"]
    assert first["sae_ception_aux_term"][0] == pytest.approx(sum(aux_values[:steps0]) / steps0)
    for entry in r.per_experience:
        m = entry["method"]
        assert len(m["sae_ception_aux_term"]) == len(m["sae_ception_lam_aux_share"]) == 3
        assert all(0 <= v <= 2 for v in m["sae_ception_aux_term"])
        assert all(v > 0 for v in m["sae_ception_lam_aux_share"])


def test_cycle_epochs_compose_with_replay(digits_stream: Stream) -> None:
    """The cycle epochs run in the template's loop, so replay's loader still mixes old classes
    into them (a private loop over the experience's rows would not)."""
    probe = EpochProbe()
    r = run(resolve_config("split-digits", "sae-ception+replay", "mlp", 0,
                           FAST + ["mono.when=off", "sae-ception.cycles=2"]),
            stream=digits_stream, extra_plugins=[probe])
    assert r.status == "ok", r.error
    own = [set(c) for c in digits_stream.classes_per_exp]
    for e in range(1, digits_stream.n_experiences):
        cycle = [set(y) for x, epoch, y in probe.batches if x == e and epoch >= 1]
        assert cycle and any(labels - own[e] for labels in cycle), e


def test_divergence_guard_sees_the_aux_term(digits_stream: Stream,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-finite aux term in a cycle epoch stops the run through the runner's guard."""
    monkeypatch.setattr(sae_ception_module, "aux_loss",
                        lambda h, t, kind: (h * float("nan")).mean())
    r = run(resolve_config("split-digits", "sae-ception", "mlp", 0, FAST + ["mono.when=off"]),
            stream=digits_stream)
    assert r.status == "failed"
    assert "training loss became nan at experience 0" in (r.error or "")


def test_frozen_copy_drops_other_hooks(digits_stream: Stream) -> None:
    """Another plugin's tap (sae-reg's) holds the last forward's graph: the frozen copy is made
    without it (a deep copy with it fails), and the live model keeps it."""
    s = digits_stream
    model = create_model("mlp", s.input_shape, s.n_classes)
    tap = LayerTap(model, "fc2")
    model(s.x_train[:4])                   # tap.out: a non-leaf tensor with its graph
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(model)
    frozen = sae_ception_module.frozen_copy(model)
    assert not frozen.training and not any(q.requires_grad for q in frozen.parameters())
    assert not any(m._forward_hooks for m in frozen.modules())
    assert any(m._forward_hooks for m in model.modules())
    frozen(s.x_train[:2])
    assert tap.out is not None and tap.out.shape[0] == 4    # the copy's forward left it alone
    tap.remove()
