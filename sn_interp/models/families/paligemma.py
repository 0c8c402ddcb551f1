"""PaliGemma family: ``PaliGemmaForConditionalGeneration`` (PaliGemma 1 and 2, 3B-28B).

The language model (``model.language_model``) is Gemma (PaliGemma 1: the Llama layout with a
GeGLU MLP) or Gemma 2 (PaliGemma 2: the sandwich norms of :mod:`.gemma3`, chosen per
checkpoint by the layout below: Gemma 2 layers have ``pre_feedforward_layernorm``).
Embeddings are scaled by ``sqrt(hidden_size)``. There is no chat template: the prompt is
``<image>`` + the question, which the processor expands to ``<image>*N <bos> question \\n``
(the last prompt token is that newline); image and prompt tokens form a prefix attended
bidirectionally. The SigLIP tower (``model.vision_tower.encoder.layers``) has no CLS token.
"""

from __future__ import annotations

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin
from transformers.models.paligemma.processing_paligemma import EXTRA_TOKENS

from sn_interp.models.adapter import Adapter
from sn_interp.models.families import _hf
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily

ADAPTER = Adapter(
    family="paligemma",
    architectures=("PaliGemmaForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_tower.encoder.layers",
                   "model.vision_tower.vision_model.encoder.layers"),
    vision_tokens="batch_first",
    prompt_format="<image>{question}",
    notes=("no chat template: the prompt is the question; prefix attention is bidirectional",
           "embeddings scaled by sqrt(d_model)"),
)

TOKENIZERS = {
    "paligemma": TokenizerFamily(
        special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<image>"),
        bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        chat_template="", named_tokens=(("image_token", "<image>"),),
    ),
}

_IMAGE = 28  # SigLIP 28 px, patch 14 -> 4 image tokens


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """PaliGemma 1: SigLIP tower, Gemma LM (2 layers, GQA 4/2, head_dim 16).

    Adds the processor's ``<loc....>`` / ``<seg...>`` tokens to ``tok`` first, so the
    vocabulary covers them.
    """
    tok.add_tokens(EXTRA_TOKENS)
    (image_id,) = _hf.ids(tok, "<image>")
    text = transformers.GemmaConfig(**_hf.text_kwargs(tok, head_dim=16))
    return transformers.PaliGemmaConfig(
        text_config=text, vision_config=_hf.siglip_vision(_IMAGE, projection_dim=64),
        image_token_index=image_id, projection_dim=64, hidden_size=64)


def _processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """PaliGemmaProcessor with a 28-pixel SigLIP image processor (4 image tokens)."""
    image = transformers.SiglipImageProcessor(
        size={"height": _IMAGE, "width": _IMAGE}, image_mean=_hf.SIGLIP_MEAN,
        image_std=_hf.SIGLIP_STD)
    image.image_seq_length = 4  # pyright: ignore[reportAttributeAccessIssue]  (read by PaliGemmaProcessor)
    return transformers.PaliGemmaProcessor(image_processor=image, tokenizer=tok)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-paligemma", "paligemma", "PaliGemmaForConditionalGeneration",
                   tokenizer_family="paligemma", chat_template="paligemma", seed=1008,
                   make_config=_config, make_processor=_processor),),
    tokenizers=TOKENIZERS,
    chat_templates={"paligemma": ""},
    hub_ids=("google/paligemma-3b-mix-224", "google/paligemma2-3b-mix-224",
             "google/paligemma2-10b-mix-448"),
)
