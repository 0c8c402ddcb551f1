"""Offline random-weight tiny checkpoints of every supported VLM class, for tests and demos.

Each tiny model is a real HuggingFace checkpoint directory (``config.json``,
``model.safetensors``, ``generation_config.json``, tokenizer, image/video processor, chat
template) built entirely in code, so ``AutoProcessor.from_pretrained(path)`` and
``<ModelClass>.from_pretrained(path)`` work without network access::

    from sn_interp.models.tiny import tiny_path
    path = tiny_path("tiny-qwen3-vl")          # built into the cache on first use

The same name always yields bit-identical weights: each spec has a fixed seed and the model is
initialised in float32 right after seeding. Builds are atomic (built in a temporary directory,
then renamed) and carry a marker file with a format version, so a killed build never leaves a
half checkpoint and a format change rebuilds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

from sn_interp.cache import build_atomically, cache_dir
from sn_interp.models._tokenizer import build_tokenizer

__all__ = [
    "MARKER",
    "TINY_FORMAT_VERSION",
    "TINY_MODELS",
    "TINY_NAMES",
    "TinySpec",
    "build_tiny",
    "tiny_path",
]

#: Bump when anything that changes the saved checkpoint changes (configs, tokenizer, seeds).
TINY_FORMAT_VERSION = 2
#: Marker file written last into a finished checkpoint directory.
MARKER = "sn_interp_tiny.json"


@dataclass(frozen=True)
class TinySpec:
    """How to build one tiny checkpoint.

    Attributes:
        name: registry name, e.g. ``tiny-llava``.
        family: adapter family (``llava`` or ``qwen_vl``).
        model_class: name of the ``transformers`` model class.
        tokenizer_family: key of :data:`sn_interp.models._tokenizer.TOKENIZER_FAMILIES`.
        chat_template: key of :data:`sn_interp.models._tokenizer.CHAT_TEMPLATES`.
        seed: torch seed used right before constructing the model.
        make_config: tokenizer -> model config.
        make_processor: tokenizer -> processor.
    """

    name: str
    family: str
    model_class: str
    tokenizer_family: str
    chat_template: str
    seed: int
    make_config: Callable[[PreTrainedTokenizerFast], PretrainedConfig]
    make_processor: Callable[[PreTrainedTokenizerFast], ProcessorMixin]


# --------------------------------------------------------------------------- helpers


def _vocab(tok: PreTrainedTokenizerFast) -> int:
    """Config vocabulary size: ``len(tok)`` rounded up to a multiple of 64."""
    return -(-len(tok) // 64) * 64


def _ids(tok: PreTrainedTokenizerFast, *tokens: str) -> list[int]:
    """Ids of special tokens, failing loudly if one is missing."""
    ids = tok.convert_tokens_to_ids(list(tokens))
    missing = [t for t, i in zip(tokens, ids, strict=True) if i is None or i == tok.unk_token_id]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return ids


def _text_kwargs(tok: PreTrainedTokenizerFast, **kw: Any) -> dict[str, Any]:
    """Language-model config fields shared by every family, overridden by ``kw``."""
    base = {
        "vocab_size": _vocab(tok),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.bos_token_id,
        "tie_word_embeddings": False,
    }
    base.update(kw)
    return base


def _qwen_rope(theta: float, section: list[int], **kw: Any) -> dict[str, Any]:
    """Multimodal RoPE parameters (``mrope_section`` sums to ``head_dim // 2``)."""
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": section, **kw}


def _qwen_token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    """Qwen-VL top-level token ids, read from the tokenizer."""
    img, vid, start, end = _ids(
        tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
    )
    return {
        "image_token_id": img,
        "video_token_id": vid,
        "vision_start_token_id": start,
        "vision_end_token_id": end,
    }


# --------------------------------------------------------------------------- LLaVA family

_LLAVA_IMAGE = 42  # CLIP 42x42, patch 14 -> 3x3 patches (+CLS, dropped) = 9 image tokens
_NEXT_TILE = 28  # LLaVA-NeXT / OneVision tile: 2x2 patches
_NEXT_PINPOINTS = [[28, 56], [56, 28], [56, 56]]
_OV_PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56]]


def _clip_vision(image_size: int, **kw: Any) -> transformers.CLIPVisionConfig:
    """A 2-layer, width-32 CLIP vision tower."""
    base = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 14,
    }
    return transformers.CLIPVisionConfig(**{**base, **kw})


def _clip_image_kwargs(size: int) -> dict[str, Any]:
    """Resize/crop/normalise settings of a CLIP image processor at ``size`` pixels."""
    return {
        "size": {"shortest_edge": size},
        "crop_size": {"height": size, "width": size},
        "image_mean": transformers.image_utils.OPENAI_CLIP_MEAN,
        "image_std": transformers.image_utils.OPENAI_CLIP_STD,
    }


def _llava_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-1.5: CLIP tower, MLP projector, Llama LM (2 layers, GQA 4/2)."""
    (image_id,) = _ids(tok, "<image>")
    return transformers.LlavaConfig(
        vision_config=_clip_vision(_LLAVA_IMAGE),
        text_config=transformers.LlamaConfig(**_text_kwargs(tok)),
        image_token_index=image_id,
        image_seq_length=9,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


def _llava_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaProcessor with a 42-pixel CLIPImageProcessor."""
    image = transformers.CLIPImageProcessor(**_clip_image_kwargs(_LLAVA_IMAGE))
    return transformers.LlavaProcessor(
        image_processor=image,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )


def _llava_next_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-NeXT: anyres tiles of 28 pixels, Llama LM (3 layers, MLP 96)."""
    (image_id,) = _ids(tok, "<image>")
    return transformers.LlavaNextConfig(
        vision_config=_clip_vision(_NEXT_TILE),
        text_config=transformers.LlamaConfig(
            **_text_kwargs(tok, num_hidden_layers=3, intermediate_size=96)
        ),
        image_token_index=image_id,
        image_seq_length=4,
        image_grid_pinpoints=_NEXT_PINPOINTS,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


def _llava_next_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaNextProcessor with small ``image_grid_pinpoints``."""
    image = transformers.LlavaNextImageProcessor(
        **_clip_image_kwargs(_NEXT_TILE), image_grid_pinpoints=_NEXT_PINPOINTS
    )
    return transformers.LlavaNextProcessor(
        image_processor=image,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )


def _llava_onevision_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """LLaVA-OneVision: SigLIP tower (no CLS), Qwen2 LM (hidden 48, 2 layers, qkv bias)."""
    image_id, video_id = _ids(tok, "<image>", "<video>")
    vision = transformers.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=_NEXT_TILE,
        patch_size=14,
        vision_use_head=False,
    )
    text = transformers.Qwen2Config(**_text_kwargs(tok, hidden_size=48, intermediate_size=112))
    return transformers.LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_id,
        video_token_index=video_id,
        image_grid_pinpoints=_OV_PINPOINTS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )


def _llava_onevision_processor(tok: PreTrainedTokenizerFast) -> ProcessorMixin:
    """LlavaOnevisionProcessor: 28-pixel tiles, 4 tokens per tile, plus a video processor."""
    siglip = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    image = transformers.LlavaOnevisionImageProcessor(
        size={"height": _NEXT_TILE, "width": _NEXT_TILE},
        image_grid_pinpoints=_OV_PINPOINTS,
        **siglip,
    )
    video = transformers.LlavaOnevisionVideoProcessor(
        size={"height": _NEXT_TILE, "width": _NEXT_TILE}, **siglip
    )
    return transformers.LlavaOnevisionProcessor(
        image_processor=image,
        tokenizer=tok,
        video_processor=video,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=tok.chat_template,
    )


# --------------------------------------------------------------------------- Qwen-VL family


def _qwen_pixels(patch: int) -> dict[str, Any]:
    """Image size bounds: between 4 and 8 merged tokens per image (merge 2x2)."""
    unit = (2 * patch) ** 2
    return {
        "min_pixels": 4 * unit,
        "max_pixels": 8 * unit,
        "patch_size": patch,
        "merge_size": 2,
        "temporal_patch_size": 2,
    }


def _qwen_processor(
    tok: PreTrainedTokenizerFast,
    *,
    cls: str,
    patch: int,
    mean: list[float],
    std: list[float],
    video_cls: str,
) -> ProcessorMixin:
    """A Qwen-VL processor with a small-pixel Qwen2VLImageProcessor and a video processor."""
    px = _qwen_pixels(patch)
    image = transformers.Qwen2VLImageProcessor(**px, image_mean=mean, image_std=std)
    size = {"shortest_edge": px["min_pixels"], "longest_edge": px["max_pixels"]}
    video = getattr(transformers, video_cls)(
        size=size,
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=mean,
        image_std=std,
    )
    return getattr(transformers, cls)(
        image_processor=image, tokenizer=tok, video_processor=video, chat_template=tok.chat_template
    )


def _qwen2_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen2-VL: 2-layer ViT (embed 32), LM 2 layers, hidden 64, GQA 4/2, head_dim 16."""
    vision = transformers.Qwen2VLVisionConfig(
        depth=2,
        embed_dim=32,
        hidden_size=64,
        num_heads=2,
        mlp_ratio=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    text = transformers.Qwen2VLTextConfig(
        **_text_kwargs(tok, rope_parameters=_qwen_rope(1e6, [2, 3, 3]))
    )
    return transformers.Qwen2VLConfig(
        vision_config=vision, text_config=text, **_qwen_token_ids(tok)
    )


def _qwen2_5_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen2.5-VL: 2-layer windowed ViT (width 32), LM 3 layers, hidden 64, MLP 96."""
    vision = transformers.Qwen2_5_VLVisionConfig(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    text = transformers.Qwen2_5_VLTextConfig(
        **_text_kwargs(
            tok,
            num_hidden_layers=3,
            intermediate_size=96,
            rope_parameters=_qwen_rope(1e6, [2, 3, 3]),
        )
    )
    return transformers.Qwen2_5_VLConfig(
        vision_config=vision, text_config=text, **_qwen_token_ids(tok)
    )


def _qwen3_vl_config(tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Qwen3-VL: 3-layer ViT with DeepStack at [1, 2]; LM 3 layers, 4 heads x head_dim 24 != 64."""
    vision = transformers.Qwen3VLVisionConfig(
        depth=3,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[1, 2],
    )
    rope = _qwen_rope(5e6, [4, 4, 4], mrope_interleaved=True)
    text = transformers.Qwen3VLTextConfig(
        **_text_kwargs(tok, num_hidden_layers=3, head_dim=24, rope_parameters=rope)
    )
    return transformers.Qwen3VLConfig(
        vision_config=vision, text_config=text, **_qwen_token_ids(tok)
    )


_CLIP_MEAN = list(transformers.image_utils.OPENAI_CLIP_MEAN)
_CLIP_STD = list(transformers.image_utils.OPENAI_CLIP_STD)
_SIGLIP_MEAN = _SIGLIP_STD = [0.5, 0.5, 0.5]

_qwen2_vl_processor = partial(
    _qwen_processor, cls="Qwen2VLProcessor", patch=14, mean=_CLIP_MEAN, std=_CLIP_STD,
    video_cls="Qwen2VLVideoProcessor",
)  # fmt: skip
_qwen2_5_vl_processor = partial(
    _qwen_processor, cls="Qwen2_5_VLProcessor", patch=14, mean=_CLIP_MEAN, std=_CLIP_STD,
    video_cls="Qwen2VLVideoProcessor",
)  # fmt: skip
_qwen3_vl_processor = partial(
    _qwen_processor, cls="Qwen3VLProcessor", patch=16, mean=_SIGLIP_MEAN, std=_SIGLIP_STD,
    video_cls="Qwen3VLVideoProcessor",
)  # fmt: skip

# fmt: off
#: Every tiny checkpoint: name -> spec.
TINY_MODELS: dict[str, TinySpec] = {s.name: s for s in (
    TinySpec("tiny-llava", "llava", "LlavaForConditionalGeneration",
             tokenizer_family="llava", chat_template="llava", seed=1001,
             make_config=_llava_config, make_processor=_llava_processor),
    TinySpec("tiny-llava-next", "llava", "LlavaNextForConditionalGeneration",
             tokenizer_family="llava", chat_template="llava", seed=1002,
             make_config=_llava_next_config, make_processor=_llava_next_processor),
    TinySpec("tiny-llava-onevision", "llava", "LlavaOnevisionForConditionalGeneration",
             tokenizer_family="llava_onevision", chat_template="llava_onevision", seed=1003,
             make_config=_llava_onevision_config, make_processor=_llava_onevision_processor),
    TinySpec("tiny-qwen2-vl", "qwen_vl", "Qwen2VLForConditionalGeneration",
             tokenizer_family="qwen_vl", chat_template="qwen2_vl", seed=1004,
             make_config=_qwen2_vl_config, make_processor=_qwen2_vl_processor),
    TinySpec("tiny-qwen2.5-vl", "qwen_vl", "Qwen2_5_VLForConditionalGeneration",
             tokenizer_family="qwen_vl", chat_template="qwen2_vl", seed=1005,
             make_config=_qwen2_5_vl_config, make_processor=_qwen2_5_vl_processor),
    TinySpec("tiny-qwen3-vl", "qwen_vl", "Qwen3VLForConditionalGeneration",
             tokenizer_family="qwen_vl", chat_template="qwen3_vl", seed=1006,
             make_config=_qwen3_vl_config, make_processor=_qwen3_vl_processor),
)}
# fmt: on
#: Names of all tiny checkpoints, in registry order.
TINY_NAMES: tuple[str, ...] = tuple(TINY_MODELS)


# --------------------------------------------------------------------------- building


def _spec(name: str) -> TinySpec:
    """Look up a spec, or fail with the known names."""
    try:
        return TINY_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown tiny model {name!r}; known tiny models: {', '.join(TINY_NAMES)}"
        ) from None


def _marker(spec: TinySpec) -> dict[str, Any]:
    """Contents of the marker file of a finished checkpoint."""
    return {
        "name": spec.name,
        "version": TINY_FORMAT_VERSION,
        "seed": spec.seed,
        "family": spec.family,
        "model_class": spec.model_class,
        "transformers": transformers.__version__,
    }


def _is_current(path: Path, spec: TinySpec) -> bool:
    """True when ``path`` holds a finished checkpoint of ``spec`` in the current format."""
    try:
        found = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return found == _marker(spec)


def _seeded_model(spec: TinySpec, config: PretrainedConfig) -> torch.nn.Module:
    """Construct the model in float32 right after seeding torch with the spec's seed."""
    cls = getattr(transformers, spec.model_class)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.float().eval()


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' progress bars (e.g. "Writing model shards") for the duration."""
    hf_logging = transformers.utils.logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_tiny(name: str, out_dir: str | os.PathLike[str]) -> Path:
    """Build tiny checkpoint ``name`` into ``out_dir`` (created) and return it.

    Writes the model (``model.safetensors``, float32), config, generation config, processor
    (tokenizer, image and video processors, chat template) and, last, the marker file.
    Not atomic by itself; :func:`tiny_path` builds into a temporary directory and renames.
    """
    spec = _spec(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(spec.tokenizer_family, chat_template=spec.chat_template)
    config = spec.make_config(tok)
    config.dtype = torch.float32
    model = _seeded_model(spec, config)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (
        tok.pad_token_id,
        tok.eos_token_id,
        tok.bos_token_id,
    )
    gen.do_sample = False
    with _quiet_progress():
        model.save_pretrained(out)
    spec.make_processor(tok).save_pretrained(out)
    (out / MARKER).write_text(json.dumps(_marker(spec), indent=2, sort_keys=True) + "\n")
    return out


def tiny_path(name: str, *, rebuild: bool = False) -> Path:
    """Directory of tiny checkpoint ``name`` in the cache, building it first if needed.

    The checkpoint is built into a temporary sibling directory and renamed into place, so an
    interrupted build never leaves a half checkpoint. A directory whose marker is missing or
    from another format version is rebuilt; ``rebuild=True`` always rebuilds.
    """
    spec = _spec(name)
    final = cache_dir("models") / name
    if not rebuild and _is_current(final, spec):
        return final
    return build_atomically(final, partial(build_tiny, name),
                            lambda path: _is_current(path, spec))
