"""LLaVA family: LLaVA-1.5 / llava-interleave (``LlavaForConditionalGeneration``), LLaVA-NeXT
(``LlavaNextForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``).

In transformers >= 5 all three keep the language model at ``model.language_model`` (a Llama,
Mistral, Vicuna or Qwen2 decoder, all in the Llama layout) and a CLIP or SigLIP tower at
``model.vision_tower``.
"""

from __future__ import annotations

from sn_interp.models.adapter import Adapter, register

ADAPTER = register(Adapter(
    family="llava",
    architectures=("LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration",
                   "LlavaOnevisionForConditionalGeneration"),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_tower.encoder.layers",
                   "model.vision_tower.vision_model.encoder.layers"),
    vision_tokens="batch_first",
    vision_cls=True,
))
