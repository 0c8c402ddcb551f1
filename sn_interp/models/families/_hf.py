"""HF config helpers shared by the family modules' tiny configs, micro models and benchmarks.

Small pure functions that turn a tokenizer and a few widths into ``transformers`` config
fields; nothing here builds weights.
"""

from __future__ import annotations

from typing import Any, cast  # Any: HF config keyword arguments (mixed types)

import transformers
from transformers import PreTrainedTokenizerFast
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

CLIP_MEAN = list(OPENAI_CLIP_MEAN)
CLIP_STD = list(OPENAI_CLIP_STD)
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]


def vocab(tok: PreTrainedTokenizerFast) -> int:
    """Config vocabulary size: ``len(tok)`` rounded up to a multiple of 64."""
    return -(-len(tok) // 64) * 64


def ids(tok: PreTrainedTokenizerFast, *tokens: str) -> list[int]:
    """Ids of special tokens, failing loudly if one is missing."""
    found = cast(list[int], tok.convert_tokens_to_ids(list(tokens)))  # a list in, a list out
    missing = [t for t, i in zip(tokens, found, strict=True) if i is None or i == tok.unk_token_id]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return found


def text_kwargs(tok: PreTrainedTokenizerFast, **kw: Any) -> dict[str, Any]:
    """Language-model config fields shared by every tiny model, overridden by ``kw``."""
    base = {
        "vocab_size": vocab(tok),
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


def clip_vision(image_size: int, **kw: Any) -> transformers.CLIPVisionConfig:
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


def siglip_vision(image_size: int, patch_size: int = 14, **kw: Any
                  ) -> transformers.SiglipVisionConfig:
    """A 2-layer, width-32 SigLIP vision tower without the pooling head."""
    base = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size,
            "vision_use_head": False}
    return transformers.SiglipVisionConfig(**{**base, **kw})


def clip_image_kwargs(size: int) -> dict[str, Any]:
    """Resize/crop/normalise settings of a CLIP image processor at ``size`` pixels."""
    return {
        "size": {"shortest_edge": size},
        "crop_size": {"height": size, "width": size},
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
    }
