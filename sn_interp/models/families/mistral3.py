"""Mistral 3 family: ``Mistral3ForConditionalGeneration`` (Mistral Small 3.1 / 3.2) with a
Pixtral vision tower.

The language model (``model.language_model``) is a Mistral decoder in the Llama layout. Pixtral
keeps each image's aspect ratio: an image of ``h x w`` pixels gives ``(h/p) x (w/p)`` patches
(``p`` = ``vision_config.patch_size``), and the patches of all images of a batch are packed
into one sequence (``model.vision_tower.transformer.layers``, [1, patches, d], block-diagonal
attention per image). ``vision_resid_post`` splits that sequence per image by
``image_sizes`` and takes the mean; the projector then merges ``spatial_merge_size``^2 patches
per image token, with ``[IMG_BREAK]`` after each row and ``[IMG_END]`` last.
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


def patches_per_image(enc: Mapping[str, Tensor], config: Any) -> list[int]:  # Any: HF config attrs are dynamic
    """Pixtral patches of each image, from the processed ``image_sizes``."""
    p = config.vision_config.patch_size
    return [int(h // p) * int(w // p) for h, w in enc["image_sizes"].tolist()]


ADAPTER = Adapter(
    family="mistral3",
    architectures=("Mistral3ForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_tower.transformer.layers",),
    vision_tokens="packed",
    vision_counts=patches_per_image,
    notes=("Pixtral keeps aspect ratios and packs all images' patches into one sequence",),
)

#: Mistral Small 3 style: ``<s>[INST][IMG]{text}[/INST]``.
MISTRAL3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST]' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '[IMG]' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '[/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}"
    "{% endfor %}{% endif %}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

TOKENIZERS = {
    "mistral3": TokenizerFamily(
        special_tokens=("<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[IMG]",
                        "[IMG_BREAK]", "[IMG_END]"),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        chat_template="mistral3",
    ),
}

_PATCH = 8  # Pixtral patch 8, merge 2 -> one image token per 16x16 pixels
_LONGEST = 48  # images resized to longest edge 48 -> up to 6x6 patches, 3x3 tokens


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Mistral 3: 2-layer Pixtral (width 32, patch 8), Mistral LM (2 layers, GQA 4/2)."""
    (image_id,) = _hf.ids(tok, "[IMG]")
    vision = transformers.PixtralVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        head_dim=16, image_size=_LONGEST, patch_size=_PATCH)  # pyright: ignore[reportCallIssue]  (HF kwargs)
    text = transformers.MistralConfig(**_hf.text_kwargs(tok, head_dim=16))
    return transformers.Mistral3Config(vision_config=vision, text_config=text,
                                       image_token_index=image_id, spatial_merge_size=2,
                                       vision_feature_layer=-1)


def _processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """PixtralProcessor: longest edge 48 px, patch 8, merge 2."""
    image = transformers.PixtralImageProcessor(
        size={"longest_edge": _LONGEST}, patch_size=_PATCH, image_mean=_hf.CLIP_MEAN,
        image_std=_hf.CLIP_STD)
    return transformers.PixtralProcessor(image_processor=image, tokenizer=tok,
                                         patch_size=_PATCH, spatial_merge_size=2,
                                         chat_template=tok.chat_template)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-mistral3", "mistral3", "Mistral3ForConditionalGeneration",
                   tokenizer_family="mistral3", chat_template="mistral3", seed=1012,
                   make_config=_config, make_processor=_processor),),
    tokenizers=TOKENIZERS,
    chat_templates={"mistral3": MISTRAL3_TEMPLATE},
    hub_ids=("mistralai/Mistral-Small-3.1-24B-Instruct-2503",
             "mistralai/Mistral-Small-3.2-24B-Instruct-2506"),
)
