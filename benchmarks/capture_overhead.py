"""Capture overhead of sn_interp's nnsight trace (DESIGN section 7).

On a random-weight model shaped like LLaVA-1.5-7B with every width divided by 8 (CLIP
ViT-L/14-336: 24 layers, 577 tokens; 32-layer Llama; ~140M parameters), at batch 1 and 4:

1. capture-all-sites / plain forward: every site of every layer read at the last prompt token
   vs the same batch through an *unwrapped* copy of the model (same weights, no nnsight),
   computing only the last position's logits (``logits_to_keep=1``, as ``generate`` does).
   Target <= 1.10.
2. capture-to-layer-L / (vision + embeddings + (L+1)/32 of the language model) for L in 0, 1,
   15: the components timed separately on the unwrapped copy. Target <= 1.15.

Every ratio is measured in this process, interleaving the runs being compared (median of
``--repeats``). Last line: ``capture_overhead_ratio=<worst batch's ratio 1>``.

Run: ``.venv/bin/python benchmarks/capture_overhead.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _shaped import llava15, median_times, n_params, samples

from sn_interp.capture import capture
from sn_interp.names import ALL_SITES


def _components(raw: torch.nn.Module, enc) -> dict[str, Callable[[], object]]:
    """Plain-torch timings of the parts of a forward pass, on the unwrapped model."""
    inner = raw.model

    def vision():
        with torch.inference_mode():
            return inner.get_image_features(pixel_values=enc["pixel_values"])

    with torch.inference_mode():
        embeds = inner.get_input_embeddings()(enc["input_ids"])
        feats = torch.cat(list(vision().pooler_output))
        mask = inner.get_placeholder_mask(enc["input_ids"], inputs_embeds=embeds,
                                          image_features=feats)
        embeds = embeds.masked_scatter(mask, feats)

    def embeddings():
        with torch.inference_mode():
            e = inner.get_input_embeddings()(enc["input_ids"])
            return e.masked_scatter(mask, feats)

    def language_model():
        with torch.inference_mode():
            return inner.language_model(inputs_embeds=embeds,
                                        attention_mask=enc["attention_mask"])

    def plain():
        with torch.inference_mode():
            return raw(**enc, logits_to_keep=1)

    return {"vision": vision, "embeddings": embeddings, "language_model": language_model,
            "plain": plain}


def run(batch: int, repeats: int, vlm, raw) -> float:
    enc = vlm.encode(samples(batch, size=336))
    n = vlm.dims.n_layers
    fns = _components(raw, enc)
    every = [(s, layer) for layer in range(n) for s in ALL_SITES]
    fns["capture_all"] = lambda: capture(vlm, enc, every)
    for L in (0, 1, 15):
        fns[f"capture_L{L}"] = lambda L=L: capture(vlm, enc, [(s, L) for s in ALL_SITES])
    t = median_times(fns, repeats)
    ratio = t["capture_all"] / t["plain"]
    print(f"\nbatch {batch} (tokens {enc['input_ids'].shape[1]}): plain forward "
          f"{t['plain']:.3f}s, capture all {len(every)} site-layers {t['capture_all']:.3f}s "
          f"-> ratio {ratio:.3f} (target <= 1.10)")
    print(f"  components: vision {t['vision']:.3f}s, embeddings {t['embeddings']:.4f}s, "
          f"language model {t['language_model']:.3f}s")
    for L in (0, 1, 15):
        bound = t["vision"] + t["embeddings"] + (L + 1) / n * t["language_model"]
        print(f"  capture to layer {L:>2}: {t[f'capture_L{L}']:.3f}s, bound {bound:.3f}s "
              f"-> ratio {t[f'capture_L{L}'] / bound:.3f} (target <= 1.15)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    vlm, (raw, _) = llava15(8), llava15(8, wrapped=False)  # same seed, same weights
    print(f"model: {vlm.model_id}, {n_params(vlm) / 1e6:.1f}M parameters, "
          f"{torch.get_num_threads()} threads")
    ratios = [run(b, args.repeats, vlm, raw) for b in args.batches]
    print(f"capture_overhead_ratio={max(ratios):.3f}")


if __name__ == "__main__":
    main()
