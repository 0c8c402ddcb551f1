"""LLaVA family: LLaVA-1.5 / llava-interleave (``LlavaForConditionalGeneration``), LLaVA-NeXT
(``LlavaNextForConditionalGeneration``) and LLaVA-OneVision
(``LlavaOnevisionForConditionalGeneration``).

In transformers >= 5 all three keep the language model at ``model.language_model`` (a Llama,
Mistral, Vicuna or Qwen2 decoder, all in the Llama layout) and a CLIP or SigLIP tower at
``model.vision_tower`` ([image, token, d]; CLIP's token 0 is CLS, left out of the mean).
NeXT and OneVision tile each image into a variable number of crops whose tokens are unpadded
and reshuffled, so their vision-tower site is refused.
"""

from __future__ import annotations

from typing import Any  # Any: HF config keyword arguments (mixed types)

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import Adapter
from sn_interp.models.families import _hf
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily

_TILED = ("vision_resid_post is not supported for LLaVA-NeXT / OneVision (images are tiled "
          "into a variable number of crops); use the language-model sites")

ADAPTER = Adapter(
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
    vision_refused={"LlavaNextForConditionalGeneration": _TILED,
                    "LlavaOnevisionForConditionalGeneration": _TILED},
)

# --------------------------------------------------------------------------- chat templates

#: LLaVA-1.5 (llava-hf) style: ``USER: <image>\n{text} ASSISTANT:``.
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: llava-interleave / LLaVA-OneVision style ChatML with ``<image>`` placeholders.
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'video' %}{{ '<video>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZERS = {
    "llava": TokenizerFamily(
        special_tokens=("<unk>", "<s>", "</s>", "<pad>", "<image>"),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        chat_template="llava", add_bos_token=True,
    ),
    "llava_onevision": TokenizerFamily(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template="llava_onevision",
    ),
}

# --------------------------------------------------------------------------- tiny configs

_LLAVA_IMAGE = 42  # CLIP 42x42, patch 14 -> 3x3 patches (+CLS, dropped) = 9 image tokens
_NEXT_TILE = 28  # LLaVA-NeXT / OneVision tile: 2x2 patches
_NEXT_PINPOINTS = [[28, 56], [56, 28], [56, 56]]
_OV_PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56]]


def _llava_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-1.5: CLIP tower, MLP projector, Llama LM (2 layers, GQA 4/2)."""
    (image_id,) = _hf.ids(tok, "<image>")
    return transformers.LlavaConfig(
        vision_config=_hf.clip_vision(_LLAVA_IMAGE),
        text_config=transformers.LlamaConfig(**_hf.text_kwargs(tok)),
        image_token_index=image_id, image_seq_length=9,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )


def _llava_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaProcessor with a 42-pixel CLIPImageProcessor."""
    image = transformers.CLIPImageProcessor(**_hf.clip_image_kwargs(_LLAVA_IMAGE))
    return transformers.LlavaProcessor(
        image_processor=image, tokenizer=tok, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )


def _llava_next_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-NeXT: anyres tiles of 28 pixels, Llama LM (3 layers, MLP 96)."""
    (image_id,) = _hf.ids(tok, "<image>")
    return transformers.LlavaNextConfig(
        vision_config=_hf.clip_vision(_NEXT_TILE),
        text_config=transformers.LlamaConfig(
            **_hf.text_kwargs(tok, num_hidden_layers=3, intermediate_size=96)),
        image_token_index=image_id, image_seq_length=4, image_grid_pinpoints=_NEXT_PINPOINTS,
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )


def _llava_next_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaNextProcessor with small ``image_grid_pinpoints``."""
    image = transformers.LlavaNextImageProcessor(
        **_hf.clip_image_kwargs(_NEXT_TILE), image_grid_pinpoints=_NEXT_PINPOINTS)
    return transformers.LlavaNextProcessor(
        image_processor=image, tokenizer=tok, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )


def _llava_onevision_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-OneVision: SigLIP tower (no CLS), Qwen2 LM (hidden 48, 2 layers, qkv bias)."""
    image_id, video_id = _hf.ids(tok, "<image>", "<video>")
    text = transformers.Qwen2Config(
        **_hf.text_kwargs(tok, hidden_size=48, intermediate_size=112))
    return transformers.LlavaOnevisionConfig(
        vision_config=_hf.siglip_vision(_NEXT_TILE), text_config=text,
        image_token_index=image_id, video_token_index=video_id,
        image_grid_pinpoints=_OV_PINPOINTS, vision_feature_layer=-1,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
    )


def _llava_onevision_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaOnevisionProcessor: 28-pixel tiles, 4 tokens per tile, plus a video processor."""
    siglip: dict[str, Any] = {"image_mean": _hf.SIGLIP_MEAN, "image_std": _hf.SIGLIP_STD}
    size = {"height": _NEXT_TILE, "width": _NEXT_TILE}
    image = transformers.LlavaOnevisionImageProcessor(
        size=size, image_grid_pinpoints=_OV_PINPOINTS, **siglip)
    video = transformers.LlavaOnevisionVideoProcessor(size=size, **siglip)
    return transformers.LlavaOnevisionProcessor(
        image_processor=image, tokenizer=tok, video_processor=video, num_image_tokens=4,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        chat_template=tok.chat_template,
    )


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(
        TinySpec("tiny-llava", "llava", "LlavaForConditionalGeneration",
                 tokenizer_family="llava", chat_template="llava", seed=1001,
                 make_config=_llava_config, make_processor=_llava_processor),
        TinySpec("tiny-llava-next", "llava", "LlavaNextForConditionalGeneration",
                 tokenizer_family="llava", chat_template="llava", seed=1002,
                 make_config=_llava_next_config, make_processor=_llava_next_processor),
        TinySpec("tiny-llava-onevision", "llava", "LlavaOnevisionForConditionalGeneration",
                 tokenizer_family="llava_onevision", chat_template="llava_onevision",
                 seed=1003, make_config=_llava_onevision_config,
                 make_processor=_llava_onevision_processor),
    ),
    tokenizers=TOKENIZERS,
    chat_templates={"llava": LLAVA_TEMPLATE, "llava_onevision": LLAVA_ONEVISION_TEMPLATE},
    hub_ids=("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf",
             "llava-hf/llava-onevision-qwen2-7b-ov-hf"),
)
