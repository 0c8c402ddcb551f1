"""Gemma 3 family: ``Gemma3ForConditionalGeneration`` (Gemma 3 4B / 12B / 27B, MedGemma).

The language model (``model.language_model``) differs from the Llama layout in three ways:

- four norms per layer: ``input_layernorm`` -> attention -> ``post_attention_layernorm`` ->
  add; ``pre_feedforward_layernorm`` -> MLP -> ``post_feedforward_layernorm`` -> add. So
  ``attn_out`` is the output of ``post_attention_layernorm`` (the normed attention output that
  is added to the residual stream), ``resid_mid`` the input of ``pre_feedforward_layernorm``,
  ``mlp_out`` the output of ``post_feedforward_layernorm``; ``z`` (input of ``o_proj``) and
  ``mlp_post`` (input of ``mlp.down_proj``) are as in Llama. ``resid_mid = resid_pre +
  attn_out`` and ``resid_post = resid_mid + mlp_out`` hold exactly;
  ``z @ W_O`` is the attention output *before* its post-norm.
- token embeddings are scaled by ``sqrt(hidden_size)``: ``resid_pre[0]`` includes the scale.
- ``layer_types`` mixes ``sliding_attention`` (local window of ``sliding_window`` tokens) and
  ``full_attention`` layers; every site exists on both, and on a sliding layer the last
  prompt token attends only to the last ``sliding_window`` positions.

Image tokens: the chat template's ``<start_of_image>`` is expanded by the processor into
``mm_tokens_per_image`` soft tokens (the SigLIP tower's patches average-pooled), attended
bidirectionally. The SigLIP tower (``model.vision_tower.encoder.layers``) has no
CLS token; ``vision_resid_post`` is the mean over its patches.
"""

from __future__ import annotations

import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.models.adapter import ANY_LAYER, LLAMA_LAYOUT, Adapter
from sn_interp.models.families import _hf
from sn_interp.models.families._spec import Family, TinySpec, TokenizerFamily

#: Gemma's sandwich-norm decoder layer (also Gemma 2).
GEMMA_LAYOUT: dict[str, tuple[str, str]] = {
    **LLAMA_LAYOUT,
    "attn_out": ("post_attention_layernorm", "output"),
    "resid_mid": ("pre_feedforward_layernorm", "input"),
    "mlp_out": ("post_feedforward_layernorm", "output"),
}

ADAPTER = Adapter(
    family="gemma3",
    architectures=("Gemma3ForConditionalGeneration",),
    layers="model.language_model.layers",
    final_norm="model.language_model.norm",
    lm_head="lm_head",
    vision_blocks=("model.vision_tower.encoder.layers",
                   "model.vision_tower.vision_model.encoder.layers"),
    vision_tokens="batch_first",
    layouts={ANY_LAYER: GEMMA_LAYOUT},
    nested_images=True,
    notes=("attn_out / mlp_out are read after the post-attention / post-feedforward norms",
           "embeddings scaled by sqrt(d_model)", "sliding-window and full attention layers"),
)

#: Gemma 3 chat: ``<bos><start_of_turn>user\n<start_of_image>{text}<end_of_turn>\n...``.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

TOKENIZERS = {
    "gemma3": TokenizerFamily(
        special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                        "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
        bos_token="<bos>", eos_token="<end_of_turn>", pad_token="<pad>", unk_token="<unk>",
        chat_template="gemma3",
        named_tokens=(("image_token", "<image_soft_token>"), ("boi_token", "<start_of_image>"),
                      ("eoi_token", "<end_of_image>")),
    ),
}

_IMAGE = 56  # SigLIP 56 px, patch 14 -> 4x4 patches, pooled 2x2 -> 4 soft tokens per image


def _config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Gemma 3: SigLIP tower, LM 3 layers (sliding, sliding, full; window 8), head_dim 16."""
    image, boi, eoi = _hf.ids(tok, "<image_soft_token>", "<start_of_image>", "<end_of_image>")
    text = transformers.Gemma3TextConfig(**_hf.text_kwargs(
        tok, num_hidden_layers=3, head_dim=16, sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        query_pre_attn_scalar=16))
    return transformers.Gemma3Config(
        text_config=text, vision_config=_hf.siglip_vision(_IMAGE), mm_tokens_per_image=4,
        image_token_index=image, boi_token_index=boi, eoi_token_index=eoi)


def _processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """Gemma3Processor with a 56-pixel image processor and 4 soft tokens per image."""
    image = transformers.Gemma3ImageProcessor(
        size={"height": _IMAGE, "width": _IMAGE}, image_mean=_hf.SIGLIP_MEAN,
        image_std=_hf.SIGLIP_STD)
    return transformers.Gemma3Processor(image_processor=image, tokenizer=tok,
                                        image_seq_length=4, chat_template=tok.chat_template)


FAMILY = Family(
    adapter=ADAPTER,
    tiny=(TinySpec("tiny-gemma3", "gemma3", "Gemma3ForConditionalGeneration",
                   tokenizer_family="gemma3", chat_template="gemma3", seed=1007,
                   make_config=_config, make_processor=_processor),),
    tokenizers=TOKENIZERS,
    chat_templates={"gemma3": GEMMA3_TEMPLATE},
    hub_ids=("google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-3-27b-it"),
)
