"""Early-exit speed-up of SNs vs the base model generating its answer (DESIGN section 7).

On random-weight models shaped like LLaVA-1.5-7B and Qwen3-VL-8B with every width divided by
8 (see ``_shaped.py``), for exit layers 0, 1 and 3 and batch sizes 1 and 8:

- ``generate``: the base model answering from the samples: processor + greedy generation of a
  5-token answer with the KV cache, on an *unwrapped* copy of the model (same weights, no
  nnsight), as a user would run it.
- ``early exit``: :meth:`sn_interp.EarlyExitClassifier.predict` on the same samples, with 20
  SNs selected among the neurons of layer ``L`` (processor + trace up to the needed site).
- ``bound``: the speed-up the measured component times allow: ``generate`` / (processor +
  a plain-torch forward of vision tower, embeddings and decoder layers 0..L, stopped by a
  forward hook). speed-up / bound is the share of the possible gain early exit realises
  (target >= 0.9); the paper's figure is a 5.10x speed-up (target >= 5.1 at exit layer 0 on the
  LLaVA-shaped model at batch 1).

Times are medians of ``--repeats`` round-robin runs in one process. Last line:
``early_exit_speedup_L0=<llava batch-1 speed-up at L0> bound=<its bound>``.

Run: ``.venv/bin/python benchmarks/early_exit.py [--repeats 3] [--models llava15 qwen3vl]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _shaped import SHAPES, median_times, samples

import sn_interp as sn

EXITS = (0, 1, 3)


class _Stop(Exception):
    """Raised by a forward hook to end a plain-torch forward after a given layer."""


def _partial_forward(raw: torch.nn.Module, enc, layer: int) -> None:
    block = raw.get_submodule(f"model.language_model.layers.{layer}")

    def stop(*_: object) -> None:
        raise _Stop

    handle = block.register_forward_hook(stop)
    try:
        with torch.inference_mode():
            raw(**enc)
    except _Stop:
        pass
    finally:
        handle.remove()


def _classifiers(vlm, n_probe: int = 8) -> dict[int, sn.EarlyExitClassifier]:
    probe = samples(n_probe)
    acts = sn.extract(vlm, probe, layers=range(max(EXITS) + 1), batch_size=4, progress=False)
    # SNs of layer L only, so each classifier really exits at L (with max_layer=L the best
    # neurons of a random model may all sit in an earlier layer)
    clfs = {L: sn.EarlyExitClassifier(vlm, sn.find_super_neurons(
        acts.sel(layer=[L]), k=20, progress=False), batch_size=8) for L in EXITS}
    assert all(clf.exit_layer == L for L, clf in clfs.items())
    return clfs


def run_model(name: str, batches: list[int], repeats: int) -> dict[tuple[int, int], tuple]:
    vlm = SHAPES[name](8)
    raw, processor = SHAPES[name](8, wrapped=False)
    clfs = _classifiers(vlm)
    print(f"\n{vlm.model_id}: {sum(p.numel() for p in raw.parameters()) / 1e6:.0f}M parameters, "
          f"{vlm.dims.n_layers} decoder layers, {torch.get_num_threads()} threads")
    print(f"{'batch':>5} {'exit':>4} {'generate s':>10} {'early exit s':>12} {'speed-up':>8} "
          f"{'bound':>6} {'share':>6}")
    out = {}
    for batch in batches:
        data = samples(batch)
        enc = vlm.encode(data)

        def generate(data=data):
            e = vlm.encode(data)
            with torch.inference_mode():
                return raw.generate(**e, max_new_tokens=5, min_new_tokens=5, do_sample=False)

        fns: dict[str, Callable[[], object]] = {
            "generate": generate, "encode": lambda data=data: vlm.encode(data)}
        for L in EXITS:
            fns[f"clf{L}"] = lambda L=L, data=data: clfs[L].predict(data)
            fns[f"part{L}"] = lambda L=L, enc=enc: _partial_forward(raw, enc, L)
        t = median_times(fns, repeats)
        for L in EXITS:
            speedup = t["generate"] / t[f"clf{L}"]
            bound = t["generate"] / (t["encode"] + t[f"part{L}"])
            out[(batch, L)] = (speedup, bound)
            print(f"{batch:>5} {L:>4} {t['generate']:>10.3f} {t[f'clf{L}']:>12.3f} "
                  f"{speedup:>7.2f}x {bound:>5.2f}x {speedup / bound:>6.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    results = {m: run_model(m, args.batches, args.repeats) for m in args.models}
    if "llava15" in results and (args.batches[0], 0) in results["llava15"]:
        speedup, bound = results["llava15"][(args.batches[0], 0)]
        print(f"early_exit_speedup_L0={speedup:.2f} bound={bound:.2f}")


if __name__ == "__main__":
    main()
