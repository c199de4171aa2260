"""SAE-ception: the gradient reaches the model below the hook, the sharpened targets match a
hand computation, and the plugin runs inside real Avalanche strategies."""
from __future__ import annotations

import pytest
import torch

from clbench import resolve_config, run
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.sae.capture import LayerTap
from clbench.sae.topk import TopKSAE
from clbench.strategy_api import BuildContext, STRATEGIES
from clbench.streams import Stream
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


def test_lam_zero_equals_naive(digits_stream: Stream) -> None:
    off = ["mono.when=off"]
    zero = run(resolve_config("split-digits", "sae-ception", "mlp", 1,
                              FAST + off + ["sae-ception.lam=0"]), stream=digits_stream)
    naive = run(resolve_config("split-digits", "naive", "mlp", 1, ["epochs=1"] + off),
                stream=digits_stream)
    default = run(resolve_config("split-digits", "sae-ception", "mlp", 1, FAST + off),
                  stream=digits_stream)
    assert zero.accuracy_matrix == naive.accuracy_matrix
    assert default.accuracy_matrix != naive.accuracy_matrix   # the aux term does act


@pytest.mark.parametrize("override, fragment", [
    ("sae-ception.aux=l1", "choose one of cosine, mse"),
    ("sae-ception.sae=gated", "choose one of topk, relu_l1"),
    ("sae-ception.top_n=0", "top_n=0: must be at least 1"),
    ("sae-ception.cycles=2", "needs at least that many epochs"),
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
