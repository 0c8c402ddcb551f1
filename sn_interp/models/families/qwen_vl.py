"""Qwen-VL family: Qwen2-VL, Qwen2.5-VL and Qwen3-VL (``Qwen*VLForConditionalGeneration``).

In transformers >= 5 the language model sits at ``model.language_model`` (Qwen2 / Qwen3
decoders in the Llama layout; Qwen3 sets ``head_dim`` apart from ``hidden_size / heads``, which
:class:`~sn_interp.models.adapter.Dims` reads off ``o_proj``), and the vision tower at
``model.visual`` packs the patch tokens of all images of a batch into one sequence (split per
image by ``image_grid_thw``). Qwen3-VL's DeepStack adds visual features to the residual stream
after the first decoder layers at image positions only; the last prompt token is text, so it
is untouched and ``resid_pre[l+1] = resid_post[l]`` holds there.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, TypedDict  # Any: HF config keyword arguments (mixed types)

import transformers
from torch import Tensor
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import Adapter
from sn_interp.models.families import _hf
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily


def grid_token_counts(enc: Mapping[str, Tensor], config: object) -> list[int]:
    """Patch tokens per image of a packed vision sequence, from ``image_grid_thw``."""
    grid = enc.get("image_grid_thw")
    if grid is None:
        raise ValueError("the encoding has no image_grid_thw; cannot pool vision tokens per image")
    return [int(t * h * w) for t, h, w in grid.tolist()]


ADAPTER = Adapter(
    family="qwen_vl",
    architectures=("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                   "Qwen3VLForConditionalGeneration"),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.visual.blocks",),
    vision_tokens="packed",
    vision_counts=grid_token_counts,
    notes=("Qwen3-VL DeepStack: visual features are added after the first decoder layers at "
           "image positions only, never at the last prompt token",),
)

# --------------------------------------------------------------------------- chat templates

_QWEN_BODY = (
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' or 'image' in c or 'image_url' in c %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif c['type'] == 'video' or 'video' in c %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif 'text' in c %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
)

#: Qwen2-VL / Qwen2.5-VL ChatML, with the default system prompt when none is given.
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}" + _QWEN_BODY + "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: Qwen3-VL ChatML: no default system prompt.
QWEN3_VL_TEMPLATE = (
    "{% for message in messages %}" + _QWEN_BODY + "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZERS = {
    "qwen_vl": TokenizerFamily(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                        "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template="qwen3_vl",
    ),
}

# --------------------------------------------------------------------------- tiny configs


def qwen_rope(theta: float, section: list[int], **kw: Any) -> dict[str, Any]:
    """Multimodal RoPE parameters (``mrope_section`` sums to ``head_dim // 2``)."""
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": section, **kw}


class QwenTokenIds(TypedDict):
    """The top-level token ids of a Qwen-VL config."""

    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int


def qwen_token_ids(tok: PreTrainedTokenizerFast) -> QwenTokenIds:
    """Qwen-VL top-level token ids, read from the tokenizer."""
    img, vid, start, end = _hf.ids(
        tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    return QwenTokenIds(image_token_id=img, video_token_id=vid, vision_start_token_id=start,
                        vision_end_token_id=end)


def _qwen_pixels(patch: int) -> dict[str, Any]:
    """Image size bounds: between 4 and 8 merged tokens per image (merge 2x2)."""
    unit = (2 * patch) ** 2
    return {"min_pixels": 4 * unit, "max_pixels": 8 * unit, "patch_size": patch,
            "merge_size": 2, "temporal_patch_size": 2}


def qwen_processor(tok: PreTrainedTokenizerFast, *, cls: str, patch: int, mean: list[float],
                   std: list[float], video_cls: str) -> ProcessorMixin:
    """A Qwen-VL processor with a small-pixel Qwen2VLImageProcessor and a video processor."""
    px = _qwen_pixels(patch)
    image = transformers.Qwen2VLImageProcessor(**px, image_mean=mean, image_std=std)
    size = {"shortest_edge": px["min_pixels"], "longest_edge": px["max_pixels"]}
    video = getattr(transformers, video_cls)(size=size, patch_size=patch, merge_size=2,
                                             temporal_patch_size=2, image_mean=mean,
                                             image_std=std)
    return getattr(transformers, cls)(image_processor=image, tokenizer=tok,
                                      video_processor=video, chat_template=tok.chat_template)


def _qwen2_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen2-VL: 2-layer ViT (embed 32), LM 2 layers, hidden 64, GQA 4/2, head_dim 16."""
    vision = transformers.Qwen2VLVisionConfig(
        depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2)
    text = transformers.Qwen2VLTextConfig(
        **_hf.text_kwargs(tok, rope_parameters=qwen_rope(1e6, [2, 3, 3])))
    return transformers.Qwen2VLConfig(vision_config=vision, text_config=text,
                                      **qwen_token_ids(tok))


def _qwen2_5_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen2.5-VL: 2-layer windowed ViT (width 32), LM 3 layers, hidden 64, MLP 96."""
    vision = transformers.Qwen2_5_VLVisionConfig(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
        fullatt_block_indexes=[1])
    text = transformers.Qwen2_5_VLTextConfig(**_hf.text_kwargs(
        tok, num_hidden_layers=3, intermediate_size=96,
        rope_parameters=qwen_rope(1e6, [2, 3, 3])))
    return transformers.Qwen2_5_VLConfig(vision_config=vision, text_config=text,
                                         **qwen_token_ids(tok))


def _qwen3_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen3-VL: 3-layer ViT with DeepStack at [1, 2]; LM 3 layers, 4 heads x head_dim 24 != 64."""
    vision = transformers.Qwen3VLVisionConfig(
        depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
        deepstack_visual_indexes=[1, 2])
    rope = qwen_rope(5e6, [4, 4, 4], mrope_interleaved=True)
    text = transformers.Qwen3VLTextConfig(
        **_hf.text_kwargs(tok, num_hidden_layers=3, head_dim=24, rope_parameters=rope))
    return transformers.Qwen3VLConfig(vision_config=vision, text_config=text,
                                      **qwen_token_ids(tok))


_qwen2_vl_processor = partial(qwen_processor, cls="Qwen2VLProcessor", patch=14,
                              mean=_hf.CLIP_MEAN, std=_hf.CLIP_STD,
                              video_cls="Qwen2VLVideoProcessor")
_qwen2_5_vl_processor = partial(qwen_processor, cls="Qwen2_5_VLProcessor", patch=14,
                                mean=_hf.CLIP_MEAN, std=_hf.CLIP_STD,
                                video_cls="Qwen2VLVideoProcessor")
_qwen3_vl_processor = partial(qwen_processor, cls="Qwen3VLProcessor", patch=16,
                              mean=_hf.SIGLIP_MEAN, std=_hf.SIGLIP_STD,
                              video_cls="Qwen3VLVideoProcessor")

FAMILY = Family(
    adapter=ADAPTER,
    tiny=(
        TinySpec("tiny-qwen2-vl", "qwen_vl", "Qwen2VLForConditionalGeneration",
                 tokenizer_family="qwen_vl", chat_template="qwen2_vl", seed=1004,
                 make_config=_qwen2_vl_config, make_processor=_qwen2_vl_processor),
        TinySpec("tiny-qwen2.5-vl", "qwen_vl", "Qwen2_5_VLForConditionalGeneration",
                 tokenizer_family="qwen_vl", chat_template="qwen2_vl", seed=1005,
                 make_config=_qwen2_5_vl_config, make_processor=_qwen2_5_vl_processor),
        TinySpec("tiny-qwen3-vl", "qwen_vl", "Qwen3VLForConditionalGeneration",
                 tokenizer_family="qwen_vl", chat_template="qwen3_vl", seed=1006,
                 make_config=_qwen3_vl_config, make_processor=_qwen3_vl_processor),
    ),
    tokenizers=TOKENIZERS,
    chat_templates={"qwen2_vl": QWEN2_VL_TEMPLATE, "qwen3_vl": QWEN3_VL_TEMPLATE},
    hub_ids=("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct",
             "Qwen/Qwen3-VL-8B-Instruct"),
)
