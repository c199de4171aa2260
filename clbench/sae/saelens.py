"""SAELens interchange: write a clbench SAE as a SAELens folder, read a SAELens folder as one.

    clbench sae export runs/sae.pt out/fc1-saelens --hook-name fc1 --model-name mlp
    clbench run --stream split-digits --strategy sae-reg --set sae-reg.layer=fc1 \\
        --set sae-reg.sae_path=out/fc1-saelens

    >>> import torch
    >>> from clbench.sae.topk import TopKSAE
    >>> from clbench.sae.saelens import export_saelens, load_saelens
    >>> sae, x = TopKSAE(d_in=16, n_latents=64, k=4, seed=0), torch.randn(8, 16)
    >>> folder = export_saelens(sae, "fc1-saelens", hook_name="fc1")
    >>> sorted(p.name for p in folder.iterdir())
    ['cfg.json', 'sae_weights.safetensors']
    >>> torch.allclose(load_saelens(folder).encode(x), sae.encode(x), atol=1e-6)
    True

A SAELens folder (what ``sae_lens.SAE.load_from_disk`` and SAEBench read) holds ``cfg.json`` and
``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_in]``, ``b_dec [d_in]``. Its forward pass is::

    pre   = (x - a b_dec) @ W_enc + b_enc          a = cfg["apply_b_dec_to_input"] (0 or 1)
    z     = act(pre)                               ReLU ("standard"), ReLU(TopK_k) ("topk")
    x_hat = z @ W_dec + b_dec

clbench's (:class:`clbench.sae.topk.SAEBase`; both weights stored ``[n_latents, d_in]``) is::

    pre   = W_enc (x - b_pre) + b_enc              z as above      x_hat = W_dec z + b_pre

so with ``a = 1`` the two are the same map under ``W_enc^SL = W_enc^T``, ``W_dec^SL = W_dec``,
``b_dec = b_pre``, ``b_enc^SL = b_enc``: the export writes exactly that. A folder with ``a = 0``
is read with ``b_pre = b_dec`` and ``b_enc = b_enc^SL + W_enc b_dec`` (the same ``pre`` for every
``x``). Kinds: :class:`~clbench.sae.topk.TopKSAE` <-> ``"topk"`` (``k``),
:class:`~clbench.sae.relu_l1.ReLUL1SAE` <-> ``"standard"`` (ReLU). Anything else (a crosscoder,
a neuron basis; JumpReLU, gated, batch-TopK, input normalisation, a fine-tuning scale) has no
counterpart and is refused with one line.

The config is written in SAELens's flat (pre-6.0) layout, which every SAELens 6.x converts on
load (``handle_pre_6_0_config``); SAELens 6's own nested layout (``metadata``/``meta``) is read
too. ``ci/check_saelens_interop.py`` checks a folder against the real ``sae_lens`` package.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from clbench.errors import ClbenchError
from clbench.sae.crosscoder import TopKCrosscoder
from clbench.sae.relu_l1 import ReLUL1SAE
from clbench.sae.topk import SAEBase, TopKSAE

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
#: the four tensors of a SAELens "standard" / "topk" SAE, and nothing else is understood
WEIGHT_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
_DTYPES = {"float32": torch.float32, "torch.float32": torch.float32,
           "float16": torch.float16, "torch.float16": torch.float16,
           "bfloat16": torch.bfloat16, "torch.bfloat16": torch.bfloat16,
           "float64": torch.float64, "torch.float64": torch.float64}


def is_saelens_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a SAELens ``cfg.json``."""
    return (Path(path) / CFG_FILE).is_file()


def _safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:  # pragma: no cover  (a core dependency)
        raise ClbenchError("SAELens folders need the safetensors package: "
                           "pip install safetensors") from None
    return st


# ---------------------------------------------------------------- export


def saelens_architecture(sae: SAEBase) -> tuple[str, dict[str, Any]]:
    """``(architecture, extra cfg fields)`` of ``sae``, or a :class:`ClbenchError` for a kind with
    no SAELens counterpart. Exact types: a crosscoder is a TopKSAE but reads several sources."""
    if type(sae) is TopKSAE:
        k = int(sae.k)
        return "topk", {"k": k, "activation_fn": "topk", "activation_fn_kwargs": {"k": k}}
    if type(sae) is ReLUL1SAE:
        return "standard", {"activation_fn": "relu", "activation_fn_kwargs": {}}
    why = (f"a crosscoder over {len(sae.d_ins)} sources" if isinstance(sae, TopKCrosscoder)
           else f"a {type(sae).__name__}")
    raise ClbenchError(f"{why} has no SAELens architecture; only a TopKSAE (topk) or a "
                       "ReLUL1SAE (standard) can be exported")


def saelens_cfg(sae: SAEBase, *, hook_name: str = "", model_name: str = "") -> dict[str, Any]:
    """The ``cfg.json`` of ``sae`` (flat SAELens layout, ``apply_b_dec_to_input`` true)."""
    arch, extra = saelens_architecture(sae)
    return {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.n_latents, **extra,
            "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
            "normalize_activations": "none", "reshape_activations": "none",
            "finetuning_scaling_factor": False, "hook_name": hook_name,
            "hook_head_index": None, "model_name": model_name, "prepend_bos": True,
            "clbench_kind": type(sae).__name__}


def export_saelens(sae: SAEBase, out_dir: str | Path, *, hook_name: str = "",
                   model_name: str = "") -> Path:
    """Write ``sae`` as a SAELens folder ``out_dir`` (created; its two files replaced together).

    The files are written into a sibling temporary folder, then moved in, so a failed export
    leaves no half-written folder."""
    cfg = saelens_cfg(sae, hook_name=hook_name, model_name=model_name)  # refuses first
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ClbenchError(f"{out} is a file; give a folder for the SAELens export")
    if out.is_dir() and any(p.name not in (CFG_FILE, WEIGHTS_FILE) for p in out.iterdir()):
        raise ClbenchError(f"{out} holds other files; give an empty or new folder")
    weights = {"W_enc": sae.W_enc.detach().t(), "b_enc": sae.b_enc.detach(),
               "W_dec": sae.W_dec.detach(), "b_dec": sae.b_pre.detach()}
    weights = {k: v.to("cpu", torch.float32).contiguous().clone() for k, v in weights.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        _safetensors().save_file(weights, str(Path(tmp) / WEIGHTS_FILE))
        (Path(tmp) / CFG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
        out.mkdir(exist_ok=True)
        for name in (WEIGHTS_FILE, CFG_FILE):     # cfg.json last: it marks the folder
            (Path(tmp) / name).replace(out / name)
    return out


# ---------------------------------------------------------------- load


def _flat_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """SAELens 6's nested ``metadata``/``meta`` and pre-6 renames folded into one flat dict."""
    flat = {**(cfg.get("metadata") or {}), **(cfg.get("meta") or {}), **cfg}
    if "activation_fn_str" in flat:
        flat.setdefault("activation_fn", flat["activation_fn_str"])
    return flat


def _kind_of(cfg: dict[str, Any], where: str) -> tuple[type[SAEBase], dict[str, Any]]:
    """The clbench class and its extra constructor arguments for a SAELens config."""
    arch = str(cfg.get("architecture", "standard"))
    act = str(cfg.get("activation_fn", "relu")).lower()
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "topk" or (arch == "standard" and act == "topk"):   # pre-6 topk: "standard" + topk
        k = cfg.get("k", kwargs.get("k"))
        if not isinstance(k, int) or isinstance(k, bool):
            raise ClbenchError(f"{where}: a topk SAE needs an integer k in cfg.json "
                               f"(\"k\" or activation_fn_kwargs.k), got {k!r}")
        if cfg.get("rescale_acts_by_decoder_norm"):
            raise ClbenchError(f"{where}: rescale_acts_by_decoder_norm=true has no clbench "
                               "counterpart; fold the decoder norms into W_enc first")
        return TopKSAE, {"k": k}
    if arch == "standard" and act == "relu":
        return ReLUL1SAE, {}
    raise ClbenchError(f"{where}: SAELens architecture {arch!r} (activation {act!r}) has no "
                       "clbench counterpart; clbench reads 'standard' (ReLU) and 'topk' SAEs")


def _check_cfg(cfg: dict[str, Any], where: str) -> None:
    for key, ok in (("normalize_activations", (None, "none", False)),
                    ("reshape_activations", (None, "none")),
                    ("finetuning_scaling_factor", (None, False))):
        if cfg.get(key) not in ok:
            raise ClbenchError(f"{where}: {key}={cfg.get(key)!r} has no clbench counterpart; "
                               "clbench reads SAEs with none of it")
    if cfg.get("hook_head_index") is not None:
        raise ClbenchError(f"{where}: a per-head SAE (hook_head_index) has no clbench counterpart")


def _weights(folder: Path, cfg: dict[str, Any], where: str) -> dict[str, Tensor]:
    file = folder / WEIGHTS_FILE
    if not file.is_file():
        raise ClbenchError(f"{where}: no {WEIGHTS_FILE} beside cfg.json")
    try:
        w = _safetensors().load_file(str(file), device="cpu")
    except Exception as e:  # noqa: BLE001  (a damaged or foreign file)
        raise ClbenchError(f"{where}: {WEIGHTS_FILE} is unreadable ({e})") from None
    extra, missing = sorted(set(w) - set(WEIGHT_KEYS)), sorted(set(WEIGHT_KEYS) - set(w))
    if missing or extra:
        raise ClbenchError(f"{where}: {WEIGHTS_FILE} must hold exactly {', '.join(WEIGHT_KEYS)}; "
                           f"missing {missing or 'none'}, unexpected {extra or 'none'}")
    d, m = int(cfg["d_in"]), int(cfg["d_sae"])
    shapes = {"W_enc": (d, m), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,)}
    for k, shape in shapes.items():
        if tuple(w[k].shape) != shape:
            raise ClbenchError(f"{where}: {k} is {tuple(w[k].shape)}, but d_in={d}, d_sae={m} "
                               f"make it {shape}")
    return {k: v.to(torch.float32) for k, v in w.items()}


def load_saelens(folder: str | Path) -> SAEBase:
    """A SAELens folder as a clbench SAE (CPU, float32, eval mode; ``steps_since_fired`` zero).

    Same ``encode``/``decode`` outputs as SAELens gives, up to float rounding (module
    docstring); its decoder directions are kept as they are (not renormalised)."""
    folder = Path(folder)
    where = str(folder)
    try:
        cfg = _flat_cfg(json.loads((folder / CFG_FILE).read_text()))
    except (OSError, ValueError, AttributeError) as e:
        raise ClbenchError(f"{where}: {CFG_FILE} is not a SAELens config ({e})") from None
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ClbenchError(f"{where}: {CFG_FILE} needs a positive integer {key}, "
                               f"got {cfg.get(key)!r}")
    if str(cfg.get("dtype", "float32")) not in _DTYPES:
        raise ClbenchError(f"{where}: dtype {cfg.get('dtype')!r} is not a float dtype")
    cls, extra = _kind_of(cfg, where)
    _check_cfg(cfg, where)
    w = _weights(folder, cfg, where)
    sae = cls(d_in=cfg["d_in"], n_latents=cfg["d_sae"], **extra)
    w_enc = w["W_enc"].t().contiguous()                    # [d_sae, d_in], clbench's layout
    b_enc = w["b_enc"] if cfg.get("apply_b_dec_to_input", True) else w["b_enc"] + w_enc @ w["b_dec"]
    with torch.no_grad():
        sae.W_enc.copy_(w_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w["W_dec"])
        sae.b_pre.copy_(w["b_dec"])
    return sae.eval()


#: the SAE kinds a clbench SAE file (``SAEBase.save``) may hold, by its ``kind`` field
FILE_KINDS: dict[str, type[SAEBase]] = {c.__name__: c for c in (TopKSAE, ReLUL1SAE, TopKCrosscoder)}


def load_any_sae(path: str | Path) -> SAEBase:
    """A clbench SAE file (``SAEBase.save``) or a SAELens folder (auto-detected by its
    ``cfg.json``), on the CPU in eval mode. Raises :class:`ClbenchError` with the reason."""
    path = Path(path)
    if path.is_dir():
        if not is_saelens_dir(path):
            raise ClbenchError(f"{path} is a folder without a SAELens {CFG_FILE}")
        return load_saelens(path)
    if not path.is_file():
        raise ClbenchError(f"{path}: no such file or folder")
    try:
        kind = torch.load(path, map_location="cpu", weights_only=True).get("kind")
    except Exception as e:  # noqa: BLE001  (not a torch file)
        raise ClbenchError(f"{path} is not a clbench SAE file ({e})") from None
    if kind not in FILE_KINDS:
        raise ClbenchError(f"{path} holds a {kind!r}, not one of {', '.join(FILE_KINDS)}")
    try:
        return FILE_KINDS[kind].load(path)
    except ClbenchError:
        raise
    except Exception as e:  # noqa: BLE001  (wrong keys or shapes)
        raise ClbenchError(f"{path} is not a clbench SAE file ({e})") from None


__all__ = ["CFG_FILE", "FILE_KINDS", "load_any_sae", "WEIGHTS_FILE", "WEIGHT_KEYS", "export_saelens", "is_saelens_dir",
           "load_saelens", "saelens_architecture", "saelens_cfg"]
