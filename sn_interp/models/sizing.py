"""Sizes of real checkpoints and of their activation stores, derived from config widths.

Nothing here loads weights: a model is instantiated on PyTorch's ``meta`` device from its
config (no memory, no download), its family adapter is validated against it exactly as at load
time (so the widths are the ones :func:`sn_interp.extract` would write), and

- weight memory = parameter count x bytes per parameter of the dtype (weights only: add
  activations, the KV cache of generation and the CUDA context on top);
- store size per image = sum over sites of (layers x units per layer) x bytes per value, the
  layout of :mod:`sn_interp.store` (sample-chunked zarr, no compression; coords are a few
  hundred bytes per sample and left out). Every site is counted at every layer, so for a
  family whose layers lack a site (Qwen3.5's linear-attention layers have no ``z``) the
  number is an upper bound.

:data:`CHECKPOINTS` holds the widths of the real checkpoints that the documentation quotes,
copied from each hub repository's ``config.json``; a unit test checks each against the
parameter count the hub reports for it. Any other checkpoint works from its own config:
``python -m sn_interp.models.sizing llava-hf/llava-1.5-7b-hf`` (fetches only ``config.json``) or a
local checkpoint directory.

Example:
    >>> from sn_interp.models import sizing
    >>> dims = sizing.checkpoint_dims("llava-hf/llava-1.5-7b-hf")
    >>> dims.n_layers, dims.d_model, dims.d_mlp
    (32, 4096, 11008)
    >>> round(sizing.store_bytes(dims, 1000, "float32") / 1e9, 2)  # GB per 1,000 images
    4.55
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any  # Any: HF config keyword arguments (mixed types)

import numpy as np

from sn_interp.names import ALL_SITES, SITES_WITH_VISION

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Checkpoint:
    """A real checkpoint the guide quotes: its hub id, family class and published size.

    Example:
        >>> from sn_interp.models import sizing
        >>> ckpt = sizing.CHECKPOINTS["llava-hf/llava-1.5-7b-hf"]
        >>> ckpt.family, ckpt.params_reported, ckpt.config().text_config.hidden_size
        ('llava', 7.06, 4096)
    """

    hub_id: str
    architecture: str
    family: str
    params_reported: float
    """Parameter count (billions) shown by the hub for its safetensors weights."""
    config: Callable[[], object]
    """Builds the transformers config with the checkpoint's widths (from its config.json)."""
    reported_with_mtp: bool = False
    """``params_reported`` includes a multi-token-prediction head (Qwen3.5's ``mtp.*``) that the
    transformers class does not build; :func:`mtp_params` gives its size."""


def _llava(text: dict, vision: dict | None = None, cls: str = "LlavaConfig", **extra):
    import transformers

    clip_l: dict[str, Any] = dict(  # HF config kwargs of mixed types
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768)
    vision_cfg = transformers.CLIPVisionConfig(**(vision or clip_l))
    text_cfg = (transformers.MistralConfig if text.pop("mistral", False)
                else transformers.LlamaConfig)(**text)
    return getattr(transformers, cls)(vision_config=vision_cfg, text_config=text_cfg, **extra)


def _llava_ov():
    import transformers

    vision = transformers.SiglipVisionConfig(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
        image_size=384, patch_size=14)
    text = transformers.Qwen2Config(vocab_size=152128, hidden_size=3584, intermediate_size=18944,
                                    num_hidden_layers=28, num_attention_heads=28,
                                    num_key_value_heads=4, tie_word_embeddings=False)
    return transformers.LlavaOnevisionConfig(vision_config=vision, text_config=text)


_QWEN2_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                 num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                 tie_word_embeddings=False)


def _qwen2_vl():
    import transformers

    return transformers.Qwen2VLConfig(
        text_config=dict(_QWEN2_7B), tie_word_embeddings=False,
        vision_config=dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=3584,
                           patch_size=14, spatial_merge_size=2))


def _qwen25_vl():
    import transformers

    return transformers.Qwen2_5_VLConfig(
        text_config=dict(_QWEN2_7B), tie_word_embeddings=False,
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           out_hidden_size=3584, patch_size=14,
                           fullatt_block_indexes=[7, 15, 23, 31]))


def _qwen3_vl():
    import transformers

    text = dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                tie_word_embeddings=False)
    vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096,
                  deepstack_visual_indexes=[8, 16, 24], num_position_embeddings=2304)
    return transformers.Qwen3VLConfig(text_config=text, vision_config=vision,
                                      tie_word_embeddings=False)


def _vlm(cls: str, text_cls: str, text: dict, vision_cls: str, vision: dict, **extra):
    """A composite config ``cls(text_config=text_cls(**text), vision_config=vision_cls(...))``."""
    import transformers

    return getattr(transformers, cls)(
        text_config=getattr(transformers, text_cls)(**text),
        vision_config=getattr(transformers, vision_cls)(**vision), **extra)


_SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
               num_attention_heads=16, patch_size=14)


def _gemma3(hidden: int, inter: int, layers: int, heads: int, kv: int, head_dim: int):
    return _vlm("Gemma3Config", "Gemma3TextConfig",
                dict(vocab_size=262208, hidden_size=hidden, intermediate_size=inter,
                     num_hidden_layers=layers, num_attention_heads=heads,
                     num_key_value_heads=kv, head_dim=head_dim),
                "SiglipVisionConfig", dict(_SIGLIP, image_size=896), mm_tokens_per_image=256)


def _paligemma(text_cls: str, hidden: int, inter: int, layers: int, heads: int, kv: int,
               image: int):
    return _vlm("PaliGemmaConfig", text_cls,
                dict(vocab_size=257216, hidden_size=hidden, intermediate_size=inter,
                     num_hidden_layers=layers, num_attention_heads=heads,
                     num_key_value_heads=kv, head_dim=256),
                "SiglipVisionConfig", dict(_SIGLIP, image_size=image, projection_dim=hidden))


def _mistral_small():
    return _vlm("Mistral3Config", "MistralConfig",
                dict(vocab_size=131072, hidden_size=5120, intermediate_size=32768,
                     num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128),
                "PixtralVisionConfig", dict(hidden_size=1024, intermediate_size=4096,
                                            num_hidden_layers=24, num_attention_heads=16,
                                            image_size=1540, patch_size=14),
                tie_word_embeddings=False)


def _internvl3_8b():
    return _vlm("InternVLConfig", "Qwen2Config",
                dict(_QWEN2_7B, vocab_size=151674),
                "InternVLVisionConfig", dict(hidden_size=1024, intermediate_size=4096,
                                             num_hidden_layers=24, num_attention_heads=16,
                                             image_size=[448, 448], patch_size=[14, 14]),
                tie_word_embeddings=False)


def _idefics3(text: dict, image: int, scale: int):
    return _vlm("Idefics3Config", "LlamaConfig", text, "Idefics3VisionConfig",
                dict(_SIGLIP, image_size=image), scale_factor=scale)


def _qwen3_5(text: dict, vision: dict, tie: bool):
    """Qwen3.5: hybrid text config (3 linear-attention layers, then 1 full) + Qwen3-VL-like ViT."""
    import transformers

    text = dict(vocab_size=248320, head_dim=256, linear_key_head_dim=128,
                linear_value_head_dim=128, linear_num_key_heads=16,
                tie_word_embeddings=tie, **text)
    text["layer_types"] = (["linear_attention"] * 3 + ["full_attention"]) * (
        text["num_hidden_layers"] // 4)
    vision = dict(patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  num_position_embeddings=2304, **vision)
    return transformers.Qwen3_5Config(text_config=text, vision_config=vision,
                                      tie_word_embeddings=tie)


# Qwen3.5 widths: the hub is unreachable, so they come from third-party files of the public code
# index (search tools of this project; ``id`` = the index's file id) that copy the hub's
# config.json, each cross-checked below against a published parameter count.
# - 2B: text and vision widths from a preset table keyed ``hf_repo_id="Qwen/Qwen3.5-2B"``
#   (index id 52157203825: hidden 2048, 24 layers, 8 heads / 2 KV, MLP 6144, 16 linear value
#   heads, tied embeddings; vision depth 24, width 1024, MLP 4096, 16 heads, out 2048) and a
#   test fixture of its text_config (id 55031280296: head_dim 256, 16 x 128 linear key/value
#   heads, vocab 248320). Size: a Qwen3.5-2B inference graph drawn from the checkpoint (id
#   68794822719) reports 2.213B loaded parameters and an ``mtp.*`` head of 60,828,160.
# - 9B: text_config and vision_config as in a test fixture "run against the real Qwen3.5-9B
#   config" (id 71387934500: hidden 4096, 32 layers, 16 heads / 4 KV, MLP 12288, 32 linear value
#   heads, untied; vision depth 27, width 1152, MLP 4304, out 4096), whose safetensors index
#   totals 19,306,216,416 bytes of bf16 = 9.653B parameters (with mtp.*); the hub API's 9.65B in
#   a model survey (id 69771481474, "Qwen/Qwen3.5-9B ... total parameters 9.65B").
# - 27B: THUDM/slime scripts/models/qwen3.5-27B.sh (hidden 5120, 64 layers, 24 heads / 4 KV
#   groups, kv-channels 256, FFN 17408, vocab 248320, untied) and a full Qwen3_5Config of the
#   same widths (id 55568797625: 16 / 48 linear key / value heads of 128; vision depth 27,
#   width 1152, MLP 4304, out 5120); the hub API's 27.78B (id 69771481474).
_QWEN3_5 = {
    "2B": lambda: _qwen3_5(
        dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
             num_attention_heads=8, num_key_value_heads=2, linear_num_value_heads=16),
        dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
             out_hidden_size=2048), tie=True),
    "9B": lambda: _qwen3_5(
        dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=32,
             num_attention_heads=16, num_key_value_heads=4, linear_num_value_heads=32),
        dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
             out_hidden_size=4096), tie=False),
    "27B": lambda: _qwen3_5(
        dict(hidden_size=5120, intermediate_size=17408, num_hidden_layers=64,
             num_attention_heads=24, num_key_value_heads=4, linear_num_value_heads=48),
        dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
             out_hidden_size=5120), tie=False),
}


_LLAMA_7B = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)

#: The real checkpoints of the guide (docs/real-checkpoints.md), by hub id.
CHECKPOINTS: dict[str, Checkpoint] = {c.hub_id: c for c in (
    Checkpoint("llava-hf/llava-1.5-7b-hf", "LlavaForConditionalGeneration", "llava", 7.06,
               lambda: _llava(dict(_LLAMA_7B))),
    Checkpoint("llava-hf/llava-1.5-13b-hf", "LlavaForConditionalGeneration", "llava", 13.4,
               lambda: _llava(dict(_LLAMA_7B, hidden_size=5120, intermediate_size=13824,
                                   num_hidden_layers=40, num_attention_heads=40,
                                   num_key_value_heads=40))),
    Checkpoint("llava-hf/llava-v1.6-mistral-7b-hf", "LlavaNextForConditionalGeneration", "llava", 7.57,
               lambda: _llava(dict(vocab_size=32064, hidden_size=4096, intermediate_size=14336,
                                   num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=8, mistral=True),
                              cls="LlavaNextConfig")),
    Checkpoint("llava-hf/llava-onevision-qwen2-7b-ov-hf",
               "LlavaOnevisionForConditionalGeneration", "llava", 8.03, _llava_ov),
    Checkpoint("Qwen/Qwen2-VL-7B-Instruct", "Qwen2VLForConditionalGeneration", "qwen_vl", 8.29, _qwen2_vl),
    Checkpoint("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2_5_VLForConditionalGeneration", "qwen_vl", 8.29,
               _qwen25_vl),
    Checkpoint("Qwen/Qwen3-VL-8B-Instruct", "Qwen3VLForConditionalGeneration", "qwen_vl", 8.77, _qwen3_vl),
    Checkpoint("google/gemma-3-4b-it", "Gemma3ForConditionalGeneration", "gemma3", 4.30,
               lambda: _gemma3(2560, 10240, 34, 8, 4, 256)),
    Checkpoint("google/gemma-3-12b-it", "Gemma3ForConditionalGeneration", "gemma3", 12.2,
               lambda: _gemma3(3840, 15360, 48, 16, 8, 256)),
    Checkpoint("google/gemma-3-27b-it", "Gemma3ForConditionalGeneration", "gemma3", 27.4,
               lambda: _gemma3(5376, 21504, 62, 32, 16, 128)),
    Checkpoint("google/paligemma-3b-mix-224", "PaliGemmaForConditionalGeneration", "paligemma",
               2.92, lambda: _paligemma("GemmaConfig", 2048, 16384, 18, 8, 1, 224)),
    Checkpoint("google/paligemma2-3b-mix-224", "PaliGemmaForConditionalGeneration", "paligemma",
               3.03, lambda: _paligemma("Gemma2Config", 2304, 9216, 26, 8, 4, 224)),
    Checkpoint("google/paligemma2-10b-mix-448", "PaliGemmaForConditionalGeneration", "paligemma",
               9.66, lambda: _paligemma("Gemma2Config", 3584, 14336, 42, 16, 8, 448)),
    Checkpoint("HuggingFaceTB/SmolVLM-Instruct", "Idefics3ForConditionalGeneration", "idefics3",
               2.25, lambda: _idefics3(dict(vocab_size=49155, hidden_size=2048,
                                            intermediate_size=8192, num_hidden_layers=24,
                                            num_attention_heads=32, num_key_value_heads=32),
                                       384, 3)),
    Checkpoint("HuggingFaceM4/Idefics3-8B-Llama3", "Idefics3ForConditionalGeneration",
               "idefics3", 8.46,
               lambda: _idefics3(dict(vocab_size=128259, hidden_size=4096, intermediate_size=14336,
                                      num_hidden_layers=32, num_attention_heads=32,
                                      num_key_value_heads=8), 364, 2)),
    Checkpoint("OpenGVLab/InternVL3-8B-hf", "InternVLForConditionalGeneration", "internvl", 7.94,
               _internvl3_8b),
    Checkpoint("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "Mistral3ForConditionalGeneration",
               "mistral3", 24.0, _mistral_small),
    Checkpoint("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "Mistral3ForConditionalGeneration",
               "mistral3", 24.0, _mistral_small),
    Checkpoint("Qwen/Qwen3.5-2B", "Qwen3_5ForConditionalGeneration", "qwen3_5", 2.213,
               _QWEN3_5["2B"]),
    Checkpoint("Qwen/Qwen3.5-9B", "Qwen3_5ForConditionalGeneration", "qwen3_5", 9.653,
               _QWEN3_5["9B"], reported_with_mtp=True),
    Checkpoint("Qwen/Qwen3.5-27B", "Qwen3_5ForConditionalGeneration", "qwen3_5", 27.78,
               _QWEN3_5["27B"], reported_with_mtp=True),
)}


def meta_model(config: object, architecture: str):
    """The HF model of ``architecture`` built from ``config`` on the meta device (no memory).

    Example:
        >>> from sn_interp.models import sizing
        >>> ckpt = sizing.CHECKPOINTS["google/gemma-3-4b-it"]
        >>> model = sizing.meta_model(ckpt.config(), ckpt.architecture)
        >>> next(model.parameters()).device.type          # no memory allocated
        'meta'
    """
    import torch
    import transformers

    with torch.device("meta"):
        return getattr(transformers, architecture)(config)


def _model_of(source: str):
    """``(meta model, architecture)`` of a quoted checkpoint, a hub id or a local directory."""
    if source in CHECKPOINTS:
        ckpt = CHECKPOINTS[source]
        return meta_model(ckpt.config(), ckpt.architecture), ckpt.architecture
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    arch = (getattr(config, "architectures", None) or [""])[0]
    if not arch:
        raise ValueError(f"{source!r}: config.json names no architectures")
    return meta_model(config, arch), arch


def n_params(model) -> int:
    """Parameter count of a (meta) model; tied weights count once.

    Example:
        >>> from sn_interp.models import sizing
        >>> ckpt = sizing.CHECKPOINTS["llava-hf/llava-1.5-7b-hf"]
        >>> round(sizing.n_params(sizing.meta_model(ckpt.config(), ckpt.architecture)) / 1e9, 2)
        7.06
    """
    return sum(p.numel() for p in model.parameters())


def mtp_params(model) -> int:
    """Parameters of a Qwen3.5 checkpoint's ``mtp.*`` head, which transformers does not build.

    The head is one full-attention decoder layer, ``fc`` (``2 d_model -> d_model``) and three
    RMSNorms of ``d_model`` (it shares the embeddings and the LM head), so its size is that of
    the model's own first full-attention layer plus ``2 d_model^2 + 3 d_model``.

    Example:
        >>> from sn_interp.models import sizing
        >>> ckpt = sizing.CHECKPOINTS["Qwen/Qwen3.5-2B"]
        >>> sizing.mtp_params(sizing.meta_model(ckpt.config(), ckpt.architecture))
        60828160
    """
    text = model.config.text_config
    layer = text.layer_types.index("full_attention")
    block = model.model.language_model.layers[layer]
    d = text.hidden_size
    return n_params(block) + 2 * d * d + 3 * d


def checkpoint_dims(source: str):
    """:class:`sn_interp.models.Dims` of a checkpoint, from its family adapter on a meta model.

    Example:
        >>> from sn_interp.models import sizing
        >>> dims = sizing.checkpoint_dims("Qwen/Qwen3-VL-8B-Instruct")
        >>> dims.n_layers, dims.d_model, dims.width("z")      # z: (head, d_head) per layer
        (36, 4096, (32, 128))
    """
    from sn_interp.models.registry import adapter_for

    model, arch = _model_of(source)
    return adapter_for(arch).validate(model)


def site_bytes(dims, site: str, dtype: str = "float32") -> int:
    """Bytes one image adds to a store for one site, all its layers.

    Example:
        >>> from sn_interp.models import sizing
        >>> dims = sizing.checkpoint_dims("llava-hf/llava-1.5-7b-hf")
        >>> sizing.site_bytes(dims, "mlp_post") == 32 * 11008 * 4    # layers x d_mlp x float32
        True
    """
    layers = dims.n_vision_layers if site == "vision_resid_post" else dims.n_layers
    return layers * int(np.prod(dims.width(site))) * BYTES[dtype]


def store_bytes(dims, n_images: int = 1000, dtype: str = "float32",
                sites: Sequence[str] = ALL_SITES) -> int:
    """Bytes of a store holding ``sites`` at every layer for ``n_images`` images.

    Example:
        >>> from sn_interp.models import sizing
        >>> dims = sizing.checkpoint_dims("llava-hf/llava-1.5-7b-hf")
        >>> sizing.store_bytes(dims, 1, "float16", ("resid_post",))  # 32 layers x 4096 x 2 bytes
        262144
    """
    unknown = [s for s in sites if s not in SITES_WITH_VISION]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; the sites are {list(SITES_WITH_VISION)}")
    return n_images * sum(site_bytes(dims, s, dtype) for s in sites)


def summary(source: str) -> dict[str, object]:
    """Dims, parameters, weight memory per dtype and store size per 1,000 images of a checkpoint.

    Example:
        >>> from sn_interp.models import sizing
        >>> row = sizing.summary("llava-hf/llava-1.5-7b-hf")
        >>> round(row["weights_gb_bfloat16"], 1), round(row["store_gb_per_1000_float32"], 2)
        (14.1, 4.55)
    """
    model, arch = _model_of(source)
    from sn_interp.models.registry import adapter_for

    dims = adapter_for(arch).validate(model)
    params = n_params(model)
    out: dict[str, object] = {"checkpoint": source, "architecture": arch, "params": params,
                              **dims.__dict__}
    for dtype in ("float32", "bfloat16"):
        out[f"weights_gb_{dtype}"] = params * BYTES[dtype] / 1e9
    for dtype in ("float32", "float16"):
        out[f"store_gb_per_1000_{dtype}"] = store_bytes(dims, 1000, dtype) / 1e9
        out[f"store_gb_per_1000_{dtype}_with_vision"] = store_bytes(
            dims, 1000, dtype, (*ALL_SITES, "vision_resid_post")) / 1e9
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sn_interp.models.sizing [CHECKPOINT ...]``: print each checkpoint's sizes.

    Example:
        >>> from sn_interp.models import sizing
        >>> sizing.main(["google/gemma-3-4b-it"])              # doctest: +ELLIPSIS
        checkpoint=google/gemma-3-4b-it  architecture=Gemma3ForConditionalGeneration  params=...
    """
    parser = argparse.ArgumentParser(prog="python -m sn_interp.models.sizing", description=(__doc__ or "")
                                     .split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", default=list(CHECKPOINTS),
                        help="hub ids or checkpoint directories (default: the quoted ones)")
    args = parser.parse_args(argv)
    for source in args.checkpoints:
        row = summary(source)
        print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))


if __name__ == "__main__":
    main()
