"""Qwen3.5 family: ``Qwen3_5ForConditionalGeneration`` (dense Qwen3.5 VLMs).

A hybrid decoder (``model.language_model``, ``layer_types``): most layers are
``linear_attention`` (a Gated DeltaNet, ``linear_attn``), every fourth is ``full_attention``
(gated softmax attention, ``self_attn``). Sites by layer type:

- ``full_attention``: the Llama layout; ``z`` is the input of ``self_attn.o_proj``, i.e. the
  per-head softmax-attention output *after* its sigmoid output gate.
- ``linear_attention``: ``attn_out`` is the output of ``linear_attn`` (its ``out_proj``),
  ``resid_mid`` the input of ``post_attention_layernorm``, the MLP sites as in Llama. ``z`` is
  **absent**: the DeltaNet's value heads (``linear_num_value_heads x linear_value_head_dim``)
  are not attention heads and split differently, so ``extract`` reads ``z`` only on
  full-attention layers (``vlm.site_layers("z")``) and refuses it elsewhere.

The vision tower (``model.visual.blocks``) packs all images' patches like Qwen3-VL (split per
image by ``image_grid_thw``); Qwen3.5 has no DeepStack.
"""

from __future__ import annotations

from functools import partial

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast

from sn_interp.models.adapter import ANY_LAYER, LLAMA_LAYOUT, Adapter
from sn_interp.models.families import _hf, qwen_vl
from sn_interp.models.families._spec import Family, TinySpec

#: Gated DeltaNet layers: no attention heads, the token mixer is ``linear_attn``.
LINEAR_ATTENTION_LAYOUT: dict[str, tuple[str, str]] = {
    **{site: where for site, where in LLAMA_LAYOUT.items() if site != "z"},
    "attn_out": ("linear_attn", "output"),
}

ADAPTER = Adapter(
    family="qwen3_5",
    architectures=("Qwen3_5ForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.visual.blocks",),
    vision_tokens="packed",
    vision_counts=qwen_vl.grid_token_counts,
    layouts={ANY_LAYER: dict(LLAMA_LAYOUT), "linear_attention": LINEAR_ATTENTION_LAYOUT},
    notes=("z only on full-attention layers (linear-attention layers have no heads)",
           "z on full-attention layers is after the attention output gate"),
)


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen3.5: 2-layer ViT (width 32), LM 4 layers (3 linear + 1 full), head_dim 16."""
    vision = transformers.Qwen3_5VisionConfig(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64)
    rope = qwen_vl.qwen_rope(1e7, [2, 1, 1], mrope_interleaved=True, partial_rotary_factor=0.5)
    text = transformers.Qwen3_5TextConfig(**_hf.text_kwargs(
        tok, num_hidden_layers=4, head_dim=16, rope_parameters=rope,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
        linear_value_head_dim=8, linear_conv_kernel_dim=4))
    return transformers.Qwen3_5Config(vision_config=vision, text_config=text,
                                      **qwen_vl.qwen_token_ids(tok))


_processor = partial(qwen_vl.qwen_processor, cls="Qwen3VLProcessor", patch=16,
                     mean=_hf.SIGLIP_MEAN, std=_hf.SIGLIP_STD,
                     video_cls="Qwen3VLVideoProcessor")

FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-qwen3.5", "qwen3_5", "Qwen3_5ForConditionalGeneration",
                   tokenizer_family="qwen_vl", chat_template="qwen3_vl", seed=1013,
                   make_config=_config, make_processor=_processor),),
    hub_ids=("Qwen/Qwen3.5-2B", "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-27B"),
)
