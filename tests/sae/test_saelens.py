"""SAELens interchange (:mod:`clbench.sae.saelens`): a real clbench SAE round-trips through
``clbench sae export`` and back, a folder written by hand in the documented SAELens layout loads
with the expected outputs, and kinds SAELens cannot represent are refused in one line.

    $ python -m pytest tests/sae/test_saelens.py -q

These tests never import ``sae_lens``. That SAELens itself reads an exported folder
(``SAE.load_from_disk``) with the same outputs was checked once with sae-lens 6.54.12 in a
throwaway venv: ``ci/check_saelens_interop.py`` (see its docstring for the command).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from clbench import resolve_config, run
from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.models import create_model
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.fit import fit_layer_sae
from clbench.sae.relu_l1 import ReLUL1SAE
from clbench.sae.saelens import export_saelens, load_any_sae, load_saelens
from clbench.sae.topk import TopKSAE
from clbench.strategy_api import STRATEGIES, BuildContext
from clbench.streams import Stream
from clbench.strategies.sae_reg import load_sae

KINDS = ["topk", "relu_l1"]


@pytest.fixture(scope="module")
def fitted(digits_stream: Stream) -> dict[str, tuple[TopKSAE | ReLUL1SAE, Tensor]]:
    """Each kind's SAE fitted on the MLP's real ``fc1`` activations of split-digits."""
    model = create_model("mlp", digits_stream.input_shape, digits_stream.n_classes)
    x = digits_stream.x_train[:300]
    out = {}
    for kind in KINDS:
        f = fit_layer_sae(model, "fc1", x, kind=kind, expansion=2, k=8, steps=30, seed=0)
        out[kind] = (f.sae, f.acts)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_sae_round_trips_through_the_cli(fitted: dict, kind: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sae, acts = fitted[kind]
    sae.save(tmp_path / "sae.pt")
    (tmp_path / "sae.json").write_text(json.dumps({"layer": "fc1", "model": {"source": "mlp"}}))
    assert main(["sae", "export", str(tmp_path / "sae.pt"), str(tmp_path / "out")]) == 0
    assert "saelens:" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert cfg["architecture"] == {"topk": "topk", "relu_l1": "standard"}[kind]
    assert (cfg["d_in"], cfg["d_sae"], cfg["hook_name"], cfg["model_name"]) == (
        sae.d_in, sae.n_latents, "fc1", "mlp")
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    w = load_file(str(tmp_path / "out" / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in w.items()} == {
        "W_enc": (sae.d_in, sae.n_latents), "b_enc": (sae.n_latents,),
        "W_dec": (sae.n_latents, sae.d_in), "b_dec": (sae.d_in,)}
    back = load_sae(str(tmp_path / "out"))          # what sae-reg.sae_path does, auto-detected
    assert type(back) is type(sae)
    with torch.no_grad():
        z, z_back = sae.encode(acts), back.encode(acts)
        torch.testing.assert_close(z_back, z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back.decode(z), sae.decode(z), rtol=1e-5, atol=1e-5)
    assert (z > 0).sum() > 0                        # real codes, not all zero


def _hand_written(folder: Path, *, architecture: str, apply_b_dec: bool, k: int | None = None,
                  layout: str = "flat") -> dict[str, Tensor]:
    """A SAELens folder by the documented keys, with a random d_in=6, d_sae=10 SAE."""
    g = torch.Generator().manual_seed(0)
    w = {"W_enc": torch.randn(6, 10, generator=g), "b_enc": torch.randn(10, generator=g),
         "W_dec": torch.randn(10, 6, generator=g), "b_dec": torch.randn(6, generator=g)}
    cfg = {"architecture": architecture, "d_in": 6, "d_sae": 10, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": apply_b_dec,
           "normalize_activations": "none"}
    meta = {"model_name": "gpt2", "hook_name": "blocks.0.hook_resid_pre"}
    if k is not None:
        cfg["k"] = k
    if layout == "flat":
        cfg.update(meta, activation_fn="relu" if k is None else "topk")
    else:   # SAELens 6's own save_model layout
        cfg["metadata"] = {**meta, "sae_lens_version": "6.54.12"}
    folder.mkdir()
    save_file(w, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return w


def _reference(w: dict[str, Tensor], x: Tensor, *, apply_b_dec: bool, k: int | None) -> tuple:
    """SAELens's forward pass, written out: ``(x - a b_dec) W_enc + b_enc``, act, ``z W_dec + b_dec``."""
    pre = (x - w["b_dec"] * float(apply_b_dec)) @ w["W_enc"] + w["b_enc"]
    if k is None:
        z = torch.relu(pre)
    else:
        top = pre.topk(k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    return z, z @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("architecture, k, cls", [("standard", None, ReLUL1SAE),
                                                  ("topk", 3, TopKSAE)])
@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_a_hand_written_saelens_folder_loads(tmp_path: Path, architecture: str, k: int | None,
                                             cls: type, apply_b_dec: bool, layout: str) -> None:
    w = _hand_written(tmp_path / "sl", architecture=architecture, apply_b_dec=apply_b_dec, k=k,
                      layout=layout)
    sae = load_any_sae(tmp_path / "sl")
    assert type(sae) is cls and (sae.d_in, sae.n_latents) == (6, 10)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    z_ref, x_hat_ref = _reference(w, x, apply_b_dec=apply_b_dec, k=k)
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae.decode(z), x_hat_ref, rtol=1e-5, atol=1e-5)


def test_pre_6_topk_is_standard_with_a_topk_activation(tmp_path: Path) -> None:
    """SAELens 5 wrote TopK SAEs as ``"standard"`` with ``activation_fn_kwargs.k``."""
    w = _hand_written(tmp_path / "sl", architecture="standard", apply_b_dec=True)
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    cfg.update(activation_fn_str="topk", activation_fn_kwargs={"k": 2})
    cfg.pop("activation_fn")
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps(cfg))
    sae = load_saelens(tmp_path / "sl")
    assert isinstance(sae, TopKSAE) and sae.k == 2
    x = torch.randn(8, 6)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), _reference(w, x, apply_b_dec=True, k=2)[0],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("edit, fragment", [
    ({"architecture": "jumprelu"}, "architecture 'jumprelu' (activation 'relu') has no clbench"),
    ({"architecture": "gated"}, "architecture 'gated'"),
    ({"normalize_activations": "layer_norm"}, "normalize_activations='layer_norm' has no clbench"),
    ({"d_sae": 11}, "W_enc is (6, 10), but d_in=6, d_sae=11"),
    ({"d_in": "six"}, "needs a positive integer d_in"),
])
def test_a_folder_clbench_cannot_represent_is_refused(tmp_path: Path, edit: dict,
                                                      fragment: str) -> None:
    _hand_written(tmp_path / "sl", architecture="standard", apply_b_dec=True)
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ClbenchError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_sae(str(tmp_path / "sl"))


def test_extra_tensors_are_refused(tmp_path: Path) -> None:
    """A JumpReLU ``threshold`` mislabelled as standard must not load silently without it."""
    w = _hand_written(tmp_path / "sl", architecture="standard", apply_b_dec=True)
    save_file({**w, "threshold": torch.ones(10)}, str(tmp_path / "sl" / "sae_weights.safetensors"))
    with pytest.raises(ClbenchError, match="unexpected \\['threshold'\\]"):
        load_saelens(tmp_path / "sl")


def test_export_refuses_a_crosscoder_in_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    TopKCrosscoder([4, 3], n_latents=8, k=2).save(tmp_path / "cc.pt")
    assert main(["sae", "export", str(tmp_path / "cc.pt"), str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["clbench: error: a crosscoder over 2 sources has no SAELens architecture; "
                   "only a TopKSAE (topk) or a ReLUL1SAE (standard) can be exported"]
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ClbenchError, match="holds other files"):
        export_saelens(TopKSAE(4, 8, 2), tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case, fragment", [
    ("missing", "no such file or folder"),
    ("not torch", "is not a clbench SAE file"),
    ("out is a file", "is a file; give a folder"),
    ("folder without cfg", "a folder without a SAELens cfg.json"),
])
def test_export_bad_input_is_one_line(case: str, fragment: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "sae.pt", tmp_path / "out"
    TopKSAE(4, 8, 2).save(src)
    if case == "missing":
        src = tmp_path / "nope.pt"
    elif case == "not torch":
        src.write_text("hello")
    elif case == "out is a file":
        out.write_text("x")
    else:
        src = tmp_path / "empty"
        src.mkdir()
    assert main(["sae", "export", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clbench: error: ") and fragment in err[0], err


def test_export_names_a_local_model_folder_by_its_name(tmp_path: Path) -> None:
    TopKSAE(4, 8, 2).save(tmp_path / "sae.pt")
    (tmp_path / "sae.json").write_text(json.dumps({"layer": "block3",
                                                   "model": {"source": str(tmp_path / "lm")}}))
    assert main(["sae", "export", str(tmp_path / "sae.pt"), str(tmp_path / "out")]) == 0
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert (cfg["model_name"], cfg["hook_name"]) == ("lm", "block3")
    assert main(["sae", "export", str(tmp_path / "sae.pt"), str(tmp_path / "out"),
                 "--model-name", "smollm2-135m", "--hook-name", "blocks.3"]) == 0   # rewrites
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert (cfg["model_name"], cfg["hook_name"]) == ("smollm2-135m", "blocks.3")


@pytest.mark.filterwarnings("ignore:sae-reg.*FVU")   # fitted on an untrained MLP: expected
def test_a_run_takes_a_saelens_folder_as_sae_path(fitted: dict, digits_stream: Stream,
                                                  tmp_path: Path) -> None:
    """The real sae-reg plugin, built and run on split-digits with the exported folder."""
    sae, _ = fitted["topk"]
    folder = export_saelens(sae, tmp_path / "fc1", hook_name="fc1", model_name="mlp")
    ctx = BuildContext(stream=digits_stream, model=create_model(
        "mlp", digits_stream.input_shape, digits_stream.n_classes), batch_size=32, epochs=1, seed=0)
    p = {**STRATEGIES.get("sae-reg").obj.defaults, "layer": "fc1", "sae_path": str(folder)}
    plugin = STRATEGIES.get("sae-reg").obj.build(p, ctx)
    torch.testing.assert_close(plugin.sae.W_enc, sae.W_enc)
    r = run(resolve_config("split-digits", "sae-reg", "mlp", 0,
                           ["epochs=1", "mono.when=off", "sae-reg.max_samples=200",
                            "sae-reg.layer=fc1", f"sae-reg.sae_path={folder}"]),
            stream=digits_stream)
    assert r.status == "ok", r.error
