"""Random-weight models shaped like real checkpoints with every width divided by ``div``.

Layer counts, token counts and vocabularies stay real, so time ratios between parts of the
model (vision tower, each decoder layer, LM head, generation) are those of the real model.

- ``llava15``: LLaVA-1.5-7B: CLIP ViT-L/14-336 (24 layers, 577 tokens), 32-layer Llama-2-7B,
  vocab 32,000. At div=8 about 140M parameters.
- ``qwen3vl``: Qwen3-VL-8B: 27-layer ViT (patch 16, DeepStack at 8/16/24; 18 heads so the
  divided head width stays even), 36-layer Qwen3
  (32 heads, 8 KV heads, head_dim 128/div), vocab 151,936. Images of 448 px -> 196 tokens.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers
from PIL import Image

import sn_interp as sn
from sn_interp.checkpoints.tokenizer import CHAT_TEMPLATES, build_tokenizer
from sn_interp.models import VLM, wrap
from sn_interp.models.families import _hf, qwen_vl


def llava15(div: int = 8, *, wrapped: bool = True) -> VLM | tuple:
    """The LLaVA-1.5-7B-shaped VLM, or ``(hf_model, processor)`` untouched by nnsight."""
    tok = build_tokenizer("llava", chat_template=CHAT_TEMPLATES["llava"])
    config = llava15_config(tok, div)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    image = transformers.CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_mean=transformers.image_utils.OPENAI_CLIP_MEAN,
        image_std=transformers.image_utils.OPENAI_CLIP_STD)
    processor = transformers.LlavaProcessor(
        image_processor=image, tokenizer=tok, patch_size=14, num_additional_image_tokens=1,
        vision_feature_select_strategy="default", chat_template=tok.chat_template)
    if not wrapped:
        return model, processor
    return wrap(model, processor, model_id=f"llava-1.5-7b-shaped/{div}")


def qwen3vl(div: int = 8, *, wrapped: bool = True) -> VLM | tuple:
    """The Qwen3-VL-8B-shaped VLM, or ``(hf_model, processor)`` untouched by nnsight."""
    tok = build_tokenizer("qwen_vl", chat_template=CHAT_TEMPLATES["qwen3_vl"])
    config = qwen3vl_config(tok, div)
    torch.manual_seed(0)
    model = transformers.Qwen3VLForConditionalGeneration(config).eval()
    px = 448 * 448
    image = transformers.Qwen2VLImageProcessor(
        min_pixels=px, max_pixels=px, patch_size=16, merge_size=2, temporal_patch_size=2,
        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    video = transformers.Qwen3VLVideoProcessor(
        size={"shortest_edge": px, "longest_edge": px}, patch_size=16, merge_size=2,
        temporal_patch_size=2)
    processor = transformers.Qwen3VLProcessor(image_processor=image, tokenizer=tok,
                                              video_processor=video,
                                              chat_template=tok.chat_template)
    if not wrapped:
        return model, processor
    return wrap(model, processor, model_id=f"qwen3-vl-8b-shaped/{div}")


def llava15_config(tok, div: int) -> transformers.LlavaConfig:
    """LLaVA-1.5-7B's config with every width divided by ``div`` (the families' builders)."""
    (image_id,) = _hf.ids(tok, "<image>")
    vision = _hf.clip_vision(336, hidden_size=1024 // div, intermediate_size=4096 // div,
                             num_hidden_layers=24, num_attention_heads=16,
                             projection_dim=768 // div)
    text = transformers.LlamaConfig(**_hf.text_kwargs(
        tok, vocab_size=32000, hidden_size=4096 // div, intermediate_size=11008 // div,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=2048))
    return transformers.LlavaConfig(vision_config=vision, text_config=text,
                                    image_token_index=image_id, image_seq_length=576,
                                    vision_feature_layer=-2,
                                    vision_feature_select_strategy="default")


def qwen3vl_config(tok, div: int) -> transformers.Qwen3VLConfig:
    """Qwen3-VL-8B's config with every width divided by ``div`` (the families' builders)."""
    head_dim = 128 // div
    rope = qwen_vl.qwen_rope(5e6, _mrope(head_dim), mrope_interleaved=True)
    text = _hf.text_kwargs(tok, vocab_size=151936, hidden_size=4096 // div,
                           intermediate_size=12288 // div, num_hidden_layers=36,
                           num_attention_heads=32, num_key_value_heads=8, head_dim=head_dim,
                           rope_parameters=rope, max_position_embeddings=128000,
                           tie_word_embeddings=None)
    vision = dict(depth=27, hidden_size=1152 // div, intermediate_size=4304 // div,
                  num_heads=18, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  out_hidden_size=4096 // div, deepstack_visual_indexes=[8, 16, 24],
                  num_position_embeddings=2304)
    return transformers.Qwen3VLConfig(text_config=text, vision_config=vision,
                                      **qwen_vl.qwen_token_ids(tok))


def _mrope(head_dim: int) -> list[int]:
    half = head_dim // 2
    t = half - 2 * (3 * half // 8)
    return [t, 3 * half // 8, 3 * half // 8]


SHAPES = {"llava15": llava15, "qwen3vl": qwen3vl}


def samples(n: int, size: int = 448) -> list[sn.Sample]:
    rng = np.random.default_rng(0)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)),
                      "Is there a red object in the image? Answer yes or no.", label=i % 2,
                      class_names=("no", "yes"), answer_format="yes_no", sample_id=f"b{i}")
            for i in range(n)]


def n_params(vlm: VLM) -> int:
    return sum(p.numel() for p in vlm.model.parameters())


def median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each fn after one warm-up, run round-robin so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


_WORKER: dict[str, tuple] = {}  # per worker process: (processor VLM, unwrapped model, samples)


def plain_on_worker(model_dir: str, n_samples: int, starts: list[int], batch: int) -> float:
    """Seconds of plain forwards (processor + unwrapped forward, last logits) of the batches
    at ``starts``, in this dask worker process on one torch thread: the baseline of a split
    extraction. The model (same seed, same weights as ``llava15(8)``) and the samples are
    built on the first call, outside the time."""
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    if model_dir not in _WORKER:
        _WORKER.clear()
        _WORKER[model_dir] = (sn.load_model(model_dir), llava15(8, wrapped=False)[0],
                              samples(n_samples))
    vlm, raw, data = _WORKER[model_dir]
    t0 = time.perf_counter()
    for s in starts:
        raw(**vlm.encode(data[s:s + batch]), logits_to_keep=1)
    return time.perf_counter() - t0
