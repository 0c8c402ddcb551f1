"""Qwen-VL family: Qwen2-VL, Qwen2.5-VL and Qwen3-VL (``Qwen*VLForConditionalGeneration``).

In transformers >= 5 the language model sits at ``model.language_model`` (Qwen2 / Qwen3
decoders in the Llama layout; Qwen3 sets ``head_dim`` apart from ``hidden_size / heads``, which
:class:`~sn_interp.models.adapter.Dims` reads off ``o_proj``), and the vision tower at
``model.visual`` packs the patch tokens of all images of a batch into one sequence.
Qwen3-VL's DeepStack adds visual features to the residual stream after the first decoder layers
at image positions only; the last prompt token is text, so it is untouched.
"""

from __future__ import annotations

from sn_interp.models.adapter import Adapter, register

ADAPTER = register(Adapter(
    family="qwen_vl",
    architectures=("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                   "Qwen3VLForConditionalGeneration"),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.visual.blocks",),
    vision_tokens="packed",
))
