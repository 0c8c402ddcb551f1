"""Extraction throughput: ``sn.extract`` into a store vs a plain forward; 2 workers vs 1 process.

On the random-weight model shaped like LLaVA-1.5-7B with every width divided by 8
(``_shaped.llava15``; saved to a temporary directory and loaded with ``sn.load_model`` so
worker processes can load it by name), the same ``--samples`` images (448 px, 597 tokens) in
batches of ``--batch``:

1. *plain*: the processor (``vlm.encode``) and a forward of an unwrapped copy of the model
   (same weights, no nnsight) computing only the last position's logits, batch by batch,
   keeping nothing, vs *extract*: ``sn.extract(vlm, samples, store=...)`` with every site of
   every layer written to a Zarr store on disk. Target: extract >= 0.9x plain samples/s.
2. *1 process, 2 threads*: the same extraction in this process with torch on 2 threads, vs
   *2 workers*: ``sn.extract(..., workers=client)`` on a LocalCluster of 2 single-thread
   worker processes (``sn_interp.parallel.local_cluster``, the cluster ``extract(workers=2)``
   starts; started and the model loaded in each before timing). On a 2-core machine the
   split cannot be faster; this measures its overhead. Target >= 0.9x.
3. *2 plain workers*: the plain forwards of step 1 split the same way over the same 2
   single-thread worker processes (``_shaped.plain_on_worker``, batches alternating between
   the workers), with no nnsight and no store. Two single-thread processes on this machine's
   two cores share more than the cores (measured outside dask too: one single-thread
   process forwards a batch of 8 in 11.8 s alone and in 20 s beside another), so
   *2 workers vs 2 plain workers* is the split extraction's own overhead, and *2 plain
   workers vs 1 process* what the machine charges for two processes.

Runs are interleaved (``--repeats``, medians), each extraction into a fresh store. The machine
load is printed before and after.

Run: ``.venv/bin/python benchmarks/extraction.py [--samples 16] [--batch 2] [--repeats 3]``;
``--quick`` (4 samples, 1 repeat) checks that it runs end to end (its figures are not the
benchmark's: one repeat of two batches).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _shaped import llava15, n_params, plain_on_worker, samples

import sn_interp as sn
from sn_interp.parallel import local_cluster


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


def saved_model(root: Path) -> Path:
    """The shaped model written as a checkpoint directory (safetensors + processor)."""
    model, processor = llava15(8, wrapped=False)
    path = root / "llava-1.5-7b-shaped-8"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="4 samples in batches of 2, 1 repeat: an end-to-end check only")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.batch, args.repeats = 4, 2, 1
    from distributed import Client

    torch.set_grad_enabled(False)
    root = Path(tempfile.mkdtemp(prefix="sn-extract-bench-"))
    try:
        print(f"before: {load()}")
        model_dir = saved_model(root)
        vlm = sn.load_model(model_dir)
        raw = llava15(8, wrapped=False)[0]  # same seed, same weights, never wrapped
        data = samples(args.samples)
        batches = [data[i:i + args.batch] for i in range(0, len(data), args.batch)]
        stores = iter(range(10_000))

        def plain() -> None:
            for batch in batches:
                raw(**vlm.encode(batch), logits_to_keep=1)

        def extract(workers=None) -> None:
            path = root / f"store-{next(stores)}.zarr"
            sn.extract(vlm, data, batch_size=args.batch, store=path, workers=workers,
                       progress=False)
            shutil.rmtree(path)

        with local_cluster(2) as cluster, Client(cluster) as client:
            sn.extract(vlm, data[:2 * args.batch], batch_size=args.batch,
                       store=root / "warm.zarr", workers=client, progress=False)
            client.run(sys.path.insert, 0, str(Path(__file__).resolve().parent))
            addrs = sorted(client.scheduler_info(n_workers=-1)["workers"])
            starts = list(range(0, len(data), args.batch))

            def plain_2workers() -> None:
                futs = [client.submit(plain_on_worker, str(model_dir), len(data),
                                      starts[i::len(addrs)], args.batch, workers=[a],
                                      pure=False) for i, a in enumerate(addrs)]
                client.gather(futs)

            fns = {"plain": plain, "extract": extract,
                   "extract_2workers": lambda: extract(client),
                   "plain_2workers": plain_2workers}
            times: dict[str, list[float]] = {k: [] for k in fns}
            torch.set_num_threads(2)
            for fn in fns.values():  # warm-up
                fn()
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        t = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: args.samples / v for k, v in t.items()}
        print(f"after:  {load()}")
        print(f"model: {vlm.model_id} ({n_params(vlm) / 1e6:.0f}M parameters), "
              f"{args.samples} samples in batches of {args.batch}, all "
              f"{len(sn.names.ALL_SITES)} sites x {vlm.dims.n_layers} layers; medians of "
              f"{args.repeats} interleaved runs")
        print("| run | s | samples/s | ratio |")
        print("|---|---|---|---|")
        print(f"| plain forward (processor + forward, 2 threads) | {t['plain']:.2f} | "
              f"{rate['plain']:.2f} | 1 |")
        print(f"| extract, all sites -> store (1 process, 2 threads) | {t['extract']:.2f} | "
              f"{rate['extract']:.2f} | {rate['extract'] / rate['plain']:.2f} vs plain |")
        print(f"| extract, 2 single-thread workers | {t['extract_2workers']:.2f} | "
              f"{rate['extract_2workers']:.2f} | "
              f"{rate['extract_2workers'] / rate['extract']:.2f} vs 1 process |")
        print(f"| plain forward, 2 single-thread workers | {t['plain_2workers']:.2f} | "
              f"{rate['plain_2workers']:.2f} | "
              f"{rate['plain_2workers'] / rate['plain']:.2f} vs plain in 1 process |")
        print(f"extract_vs_plain={rate['extract'] / rate['plain']:.2f} "
              f"two_workers_vs_one_process={rate['extract_2workers'] / rate['extract']:.2f} "
              f"two_workers_vs_two_plain_workers="
              f"{rate['extract_2workers'] / rate['plain_2workers']:.2f} "
              f"two_plain_workers_vs_one_process={rate['plain_2workers'] / rate['plain']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
