"""InternVL family: ``InternVLForConditionalGeneration`` (InternVL 3 / 3.5, HF format).

The language model (``model.language_model``) is a Qwen2 / Qwen3 / Llama decoder in the Llama
layout. Each image is tiled into up to ``max_patches`` crops plus a thumbnail
(``crop_to_patches``); the InternViT tower (``model.vision_tower.encoder.layer``,
[crop, 1 + patch, d], token 0 is CLS) feeds a pixel shuffle to ``image_seq_length`` tokens per
crop, wrapped in ``<img>`` ... ``</img>``. ``vision_resid_post`` is the mean over the patch
tokens (CLS left out) of all crops of an image (crops per sample = ``<IMG_CONTEXT>`` tokens in
the row / ``image_seq_length``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import transformers
from torch import Tensor
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import Adapter
from sn_interp.models.families import _hf
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily


def tiles_per_sample(enc: Mapping[str, Tensor], config: Any) -> list[int]:  # Any: HF config attrs are dynamic
    """Crops of each sample's image: its ``<IMG_CONTEXT>`` tokens / ``image_seq_length``."""
    counts = (enc["input_ids"] == config.image_token_id).sum(1)
    if (counts % config.image_seq_length).any():
        raise ValueError(f"image tokens per sample {counts.tolist()} are not multiples of "
                         f"image_seq_length={config.image_seq_length}")
    return (counts // config.image_seq_length).tolist()


ADAPTER = Adapter(
    family="internvl",
    architectures=("InternVLForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_tower.encoder.layer",),
    vision_tokens="crops",
    vision_cls=True,
    vision_counts=tiles_per_sample,
    notes=("images tiled into crops + a thumbnail; the vision site pools all crops",),
)

#: InternVL 3 ChatML (Qwen2.5 style); an image is ``<IMG_CONTEXT>\n`` before the text.
INTERNVL_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZERS = {
    "internvl": TokenizerFamily(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                        "<IMG_CONTEXT>", "<video>"),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template="internvl",
        named_tokens=(("start_image_token", "<img>"), ("end_image_token", "</img>"),
                      ("context_image_token", "<IMG_CONTEXT>"), ("video_token", "<video>")),
    ),
}

_TILE = 28  # 28-px tiles, patch 14 -> 2x2 patches, pixel shuffle 0.5 -> 1 token per tile


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """InternVL: 2-layer InternViT (width 32, CLS), Qwen2 LM (2 layers, GQA 4/2)."""
    (image_id,) = _hf.ids(tok, "<IMG_CONTEXT>")
    vision = transformers.InternVLVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=[_TILE, _TILE], patch_size=[14, 14])
    text = transformers.Qwen2Config(**_hf.text_kwargs(tok))
    return transformers.InternVLConfig(vision_config=vision, text_config=text,
                                       image_token_id=image_id, image_seq_length=1,
                                       downsample_ratio=0.5, tie_word_embeddings=False)


def _processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """InternVLProcessor: 28-px tiles, up to 4 crops + thumbnail, 1 token per crop."""
    image = transformers.GotOcr2ImageProcessor(
        size={"height": _TILE, "width": _TILE}, crop_to_patches=True, min_patches=1,
        max_patches=4, image_mean=_hf.CLIP_MEAN, image_std=_hf.CLIP_STD)
    video = transformers.InternVLVideoProcessor(size={"height": _TILE, "width": _TILE},
                                                image_mean=_hf.CLIP_MEAN,
                                                image_std=_hf.CLIP_STD)
    return transformers.InternVLProcessor(image_processor=image, tokenizer=tok,
                                          video_processor=video, image_seq_length=1,
                                          chat_template=tok.chat_template)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-internvl", "internvl", "InternVLForConditionalGeneration",
                   tokenizer_family="internvl", chat_template="internvl", seed=1011,
                   make_config=_config, make_processor=_processor),),
    tokenizers=TOKENIZERS,
    chat_templates={"internvl": INTERNVL_TEMPLATE},
    hub_ids=("OpenGVLab/InternVL3-1B-hf", "OpenGVLab/InternVL3-8B-hf",
             "OpenGVLab/InternVL3_5-8B-HF"),
)
