"""Idefics3 / SmolVLM family: ``Idefics3ForConditionalGeneration`` (Idefics3-8B) and
``SmolVLMForConditionalGeneration`` (SmolVLM / SmolVLM2, 256M-2.2B).

The language model (``model.text_model``) is a Llama-layout decoder. Each image is split into
a grid of crops plus a downscaled global view (``do_image_splitting``); every crop goes
through the SigLIP-style tower (``model.vision_model.encoder.layers``, [crop, patch, d], no
CLS) and a pixel shuffle to ``image_seq_len`` tokens, wrapped in ``<fake_token_around_image>``
and row/column markers. ``vision_resid_post`` is the mean over the patches of all crops of an
image (crops per sample = image tokens in the row / ``image_seq_len``).
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


def crops_per_sample(enc: Mapping[str, Tensor], config: Any) -> list[int]:  # Any: HF config attrs are dynamic
    """Crops of each sample's image: its image tokens / the tokens one crop becomes."""
    vision = config.vision_config
    per_crop = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor ** 2
    counts = (enc["input_ids"] == config.image_token_id).sum(1)
    if (counts % per_crop).any():
        raise ValueError(f"image tokens per sample {counts.tolist()} are not multiples of "
                         f"{per_crop} tokens per crop")
    return (counts // per_crop).tolist()


ADAPTER = Adapter(
    family="idefics3",
    architectures=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
    layers="model.text_model.layers",
    final_norm="model.text_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_model.encoder.layers",),
    vision_tokens="crops",
    vision_counts=crops_per_sample,
    nested_images=True,
    notes=("images split into crops + a global view; the vision site pools all crops",),
)

#: SmolVLM / Idefics3 chat: ``<|im_start|>User:<image>{text}<end_of_utterance>\nAssistant:``.
SMOLVLM_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_utterance>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

TOKENIZERS = {
    "smolvlm": TokenizerFamily(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>",
                        "<fake_token_around_image>", "<image>", "<global-img>"),
        eos_token="<end_of_utterance>", pad_token="<|endoftext|>", chat_template="smolvlm",
        named_tokens=(("image_token", "<image>"),
                      ("fake_image_token", "<fake_token_around_image>"),
                      ("global_image_token", "<global-img>"),
                      ("end_of_utterance_token", "<end_of_utterance>")),
    ),
}

_CROP = 28  # vision input 28 px, patch 14 -> 2x2 patches, pixel shuffle 2 -> 1 token per crop
_LONGEST = 56  # images resized to longest edge 56 -> up to 2x2 crops + the global view


def _vision(cls: str) -> PretrainedConfig:
    return getattr(transformers, cls)(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, image_size=_CROP, patch_size=14)


def _config(tok: PreTrainedTokenizerFast, *, cls: str, vision: str) -> PretrainedConfig:
    """Idefics3 / SmolVLM: 2-layer tower (width 32), Llama LM (2 layers, GQA 4/2)."""
    (image_id,) = _hf.ids(tok, "<image>")
    text = transformers.LlamaConfig(**_hf.text_kwargs(tok))
    return getattr(transformers, cls)(vision_config=_vision(vision), text_config=text,
                                      image_token_id=image_id, scale_factor=2,
                                      pad_token_id=tok.pad_token_id)


def _processor(tok: PreTrainedTokenizerFast, *, smol: bool) -> ProcessorMixin:
    """The family's processor: 56-pixel images split into 28-pixel crops, 1 token per crop."""
    size = {"size": {"longest_edge": _LONGEST}, "max_image_size": {"longest_edge": _CROP},
            "image_mean": _hf.SIGLIP_MEAN, "image_std": _hf.SIGLIP_STD}
    if not smol:
        image = transformers.Idefics3ImageProcessor(**size)
        return transformers.Idefics3Processor(image_processor=image, tokenizer=tok,
                                              image_seq_len=1, chat_template=_template(tok))
    image = transformers.SmolVLMImageProcessor(**size)
    video = transformers.SmolVLMVideoProcessor(**size)
    return transformers.SmolVLMProcessor(image_processor=image, tokenizer=tok,
                                         video_processor=video, image_seq_len=1,
                                         chat_template=_template(tok))


def _smol_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    return _config(tok, cls="SmolVLMConfig", vision="SmolVLMVisionConfig")


def _idefics3_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    return _config(tok, cls="Idefics3Config", vision="Idefics3VisionConfig")


def _smol_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    return _processor(tok, smol=True)


def _idefics3_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    return _processor(tok, smol=False)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(
        TinySpec("tiny-smolvlm", "idefics3", "SmolVLMForConditionalGeneration",
                 tokenizer_family="smolvlm", chat_template="smolvlm", seed=1009,
                 make_config=_smol_config, make_processor=_smol_processor),
        TinySpec("tiny-idefics3", "idefics3", "Idefics3ForConditionalGeneration",
                 tokenizer_family="smolvlm", chat_template="smolvlm", seed=1010,
                 make_config=_idefics3_config, make_processor=_idefics3_processor),
    ),
    tokenizers=TOKENIZERS,
    chat_templates={"smolvlm": SMOLVLM_TEMPLATE},
    hub_ids=("HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
             "HuggingFaceM4/Idefics3-8B-Llama3"),
)


def _template(tok: PreTrainedTokenizerFast) -> str | None:
    """The tokenizer's chat template (a single string for these tokenizers)."""
    template = tok.chat_template
    if template is not None and not isinstance(template, str):
        raise TypeError(f"expected one chat template string, got {type(template).__name__}")
    return template
