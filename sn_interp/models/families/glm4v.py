"""GLM-4V family: ``Glm4vForConditionalGeneration`` (GLM-4.1V-Thinking, GLM-4.5V's dense sibling).

The language model (``model.language_model``) has sandwich norms like Gemma, under other
names: ``input_layernorm`` -> attention -> ``post_self_attn_layernorm`` -> add;
``post_attention_layernorm`` (the *pre*-MLP norm) -> MLP (fused ``gate_up_proj``) ->
``post_mlp_layernorm`` -> add. So ``attn_out`` is the output of ``post_self_attn_layernorm``,
``resid_mid`` the input of ``post_attention_layernorm``, ``mlp_out`` the output of
``post_mlp_layernorm``; ``z`` (input of ``o_proj``) and ``mlp_post`` (input of
``mlp.down_proj``) as in Llama. The vision tower (``model.visual.blocks``) packs all images'
patches into one sequence, split per image by ``image_grid_thw``, like Qwen-VL.
"""

from __future__ import annotations

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import ANY_LAYER, LLAMA_LAYOUT, Adapter
from sn_interp.models.families import _hf, qwen_vl
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily

GLM_LAYOUT: dict[str, tuple[str, str]] = {
    **LLAMA_LAYOUT,
    "attn_out": ("post_self_attn_layernorm", "output"),
    "resid_mid": ("post_attention_layernorm", "input"),
    "mlp_out": ("post_mlp_layernorm", "output"),
}

ADAPTER = Adapter(
    family="glm4v",
    architectures=("Glm4vForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.visual.blocks",),
    vision_tokens="packed",
    vision_counts=qwen_vl.grid_token_counts,
    layouts={ANY_LAYER: GLM_LAYOUT},
    notes=("attn_out / mlp_out are read after the post-attention / post-MLP norms",),
)

#: GLM-4V chat: ``[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>...``.
GLM4V_TEMPLATE = (
    "[gMASK]<sop>"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

TOKENIZERS = {
    "glm4v": TokenizerFamily(
        special_tokens=("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>",
                        "<|assistant|>", "<|begin_of_image|>", "<|end_of_image|>", "<|image|>",
                        "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"),
        eos_token="<|user|>", pad_token="<|endoftext|>", chat_template="glm4v",
        named_tokens=(("image_token", "<|image|>"), ("video_token", "<|video|>")),
    ),
}


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """GLM-4V: 2-layer ViT (width 32, patch 14), LM 2 layers (GQA 4/2, head_dim 16)."""
    image, video, boi, eoi, bov, eov = _hf.ids(
        tok, "<|image|>", "<|video|>", "<|begin_of_image|>", "<|end_of_image|>",
        "<|begin_of_video|>", "<|end_of_video|>")
    vision = transformers.Glm4vVisionConfig(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, image_size=56,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64)
    rope = qwen_vl.qwen_rope(1e4, [1, 1, 2], partial_rotary_factor=0.5)
    text = transformers.Glm4vTextConfig(**_hf.text_kwargs(tok, head_dim=16,
                                                          rope_parameters=rope))
    return transformers.Glm4vConfig(
        vision_config=vision, text_config=text, image_token_id=image, video_token_id=video,
        image_start_token_id=boi, image_end_token_id=eoi, video_start_token_id=bov,
        video_end_token_id=eov)


def _processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """Glm4vProcessor: between 4 and 8 merged tokens per image (patch 14, merge 2)."""
    unit = 28 * 28
    size = {"shortest_edge": 4 * unit, "longest_edge": 8 * unit}
    common = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
              "image_mean": _hf.CLIP_MEAN, "image_std": _hf.CLIP_STD}
    image = transformers.Glm4vImageProcessor(size=size, **common)
    video = transformers.Glm4vVideoProcessor(size=size, **common)
    return transformers.Glm4vProcessor(image_processor=image, tokenizer=tok,
                                       video_processor=video, chat_template=tok.chat_template)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-glm4v", "glm4v", "Glm4vForConditionalGeneration",
                   tokenizer_family="glm4v", chat_template="glm4v", seed=1014,
                   make_config=_config, make_processor=_processor),),
    tokenizers=TOKENIZERS,
    chat_templates={"glm4v": GLM4V_TEMPLATE},
    hub_ids=("zai-org/GLM-4.1V-9B-Thinking",),
)
