"""Cost of a selection null (100 permutations) as a multiple of one scoring pass (DESIGN 7).

N=1,000 samples x F=1,000,000 neurons (random float32, 10 classes, random labels), generated
in blocks of ``--block`` columns so the whole matrix is never held at once. Per block, in
one process and interleaved, we time (a) one centroid scoring pass exactly as
``find_super_neurons`` runs it (``neurons.score_blocks``: dask chunks of ``neurons.BLOCK``
units, the compiled kernel, default threaded scheduler), the pass ``benchmarks/scoring.py``
measures, and (b) the selection null's search over ``--perms`` permutations as
``sn.selection_null`` runs it (``null._rank_permutations``: the same chunks, the
permutation-batched kernel, each chunk's per-permutation top k merged into a running top k).
On the first block the batched scores of two permutations are checked against the one-plan
kernel bit for bit. Kernels are compiled and dask warmed up before any timing. Machine load
is printed before and after. Last line: ``null_scoring_ratio=<value>`` (null wall time /
scoring wall time; the target is <= 25 for 100 permutations).

Run: ``.venv/bin/python benchmarks/null.py [--features 1000000 --perms 100]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr
from scoring import load

from sn_interp.probes import neurons, null


def block_acts(x: np.ndarray, y: np.ndarray) -> xr.Dataset:
    """One block as a one-site, one-layer activation Dataset."""
    return xr.Dataset({"mlp_post": (("sample", "layer", "d_mlp"), x[:, None, :])},
                      coords={"layer": [0], "label": ("sample", y)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--perms", type=int, default=100)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--block", type=int, default=50_000, help="columns generated at once")
    args = ap.parse_args(argv)
    print(f"before: {load()}")
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.samples)
    plan = neurons.make_plan(y, args.classes, "centroid", "probe", 5, 0)
    perms = np.stack([rng.permutation(y) for _ in range(args.perms)])
    pp = null._PermPlans.make(perms, args.classes, "centroid", "probe", 5, 0)
    blocks = [("mlp_post", 0)]
    warm = rng.standard_normal((args.samples, 2 * neurons.BLOCK), dtype=np.float32)
    t0 = time.perf_counter()
    neurons.score_blocks(block_acts(warm, y), blocks, plan, progress=False)
    null._rank_permutations(block_acts(warm, y), blocks, pp, args.k, progress=False)
    t_warm = time.perf_counter() - t0
    t_score = t_null = 0.0
    for start in range(0, args.features, args.block):
        w = min(args.block, args.features - start)
        x = rng.standard_normal((args.samples, w), dtype=np.float32)
        acts = block_acts(x, y)
        t0 = time.perf_counter()
        neurons.score_blocks(acts, blocks, plan, progress=False)
        t_score += time.perf_counter() - t0
        t0 = time.perf_counter()
        null._rank_permutations(acts, blocks, pp, args.k, progress=False)
        t_null += time.perf_counter() - t0
        if start == 0:
            scores, _ = null.perm_scores(x[:, :4096], pp)
            for p in (0, args.perms - 1):
                ref = neurons._centroid_block_compiled(x[:, :4096], pp.plans[p])[0]
                if not np.array_equal(scores[p], ref):
                    raise AssertionError(f"batched and one-plan scores differ (perm {p})")
    gb = args.samples * args.features * 4 / 1e9
    print(f"after:  {load()}")
    print(f"matrix: {args.samples} x {args.features} float32 ({gb:.1f} GB), {args.classes} "
          f"classes, blocks of {args.block} columns, chunks of {neurons.BLOCK}")
    print(f"warm-up (compile or cache load, first dask compute; not timed below): "
          f"{t_warm:.2f} s")
    print(f"one scoring pass (score_blocks, dask threads): {t_score:.2f} s")
    print(f"selection null, {args.perms} permutations, top-{args.k} each: {t_null:.2f} s "
          f"({t_null / args.perms:.3f} s per permutation, "
          f"{args.perms * t_score / t_null:.1f} permutations per scoring pass)")
    print(f"null_scoring_ratio={t_null / t_score:.2f}")


if __name__ == "__main__":
    main()
