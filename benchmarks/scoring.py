"""Scoring all neurons with a rule vs one numpy read pass over the same matrix (DESIGN 7).

``--rule`` picks any registered rule (``centroid`` by default; ``threshold``, ``interval``):
its :meth:`~sn_interp.probes.rules.Rule.score_block` kernel runs through the same dask path,
with the rule's own chunk width. The compiled-vs-numpy check and the scikit-learn loop below
are the centroid rule's; for another rule the threaded and synchronous results are still
checked to be identical.

N=1,000 samples x F=1,000,000 neurons (random float32, 10 classes, random labels), generated
in blocks so the whole matrix is never held at once; per block we time (a) one numpy read pass
(``block.sum(axis=0)``, one thread, as the issue defines it), (b) the library's centroid kernel
(the compiled numba kernel ``score_blocks`` uses by default) on the block through the same
dask path ``find_super_neurons`` uses (``neurons.BLOCK``-unit chunks, default threaded
scheduler), (c) the same single threaded (synchronous scheduler),
also as CPU time, which time slicing by other processes on a shared machine does not inflate,
and (d) for reference a two-thread read pass (numpy sums of the two column halves in two
threads). The threaded and synchronous results are checked to be identical. A per-neuron
scikit-learn ``NearestCentroid`` loop on a sample of neurons is timed and extrapolated to F.
The machine load (1-minute load average, CPU pressure) is printed before and after, since a
shared machine's load changes every ratio. The kernel is compiled (or loaded from numba's
``__pycache__`` cache) by a warm-up call on a small block before any timing, and a small
graph is computed once with each dask scheduler (the first ``dask.compute`` in a process
spends a few tenths of a second on one-off imports and setup, about as long as the whole
read pass); both one-off times are printed. Last line: ``scoring_read_ratio=<value>``
(threaded scoring wall time / one-thread read pass wall time).

Run: ``.venv/bin/python benchmarks/scoring.py [--features 1000000] [--rule interval]``
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from sn_interp.probes import neurons
from sn_interp.probes.rules import get_rule, rule_names


def load() -> str:
    """The 1-minute load average and the 10 s CPU pressure (share of time tasks waited)."""
    text = f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    psi = Path("/proc/pressure/cpu")
    if psi.exists():
        some = psi.read_text().split()[1]  # "avg10=12.34"
        text += f", cpu pressure {some.split('=')[1]}%"
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--block", type=int, default=50_000, help="columns generated at once")
    ap.add_argument("--sklearn-neurons", type=int, default=200)
    ap.add_argument("--rule", choices=rule_names(), default="centroid")
    args = ap.parse_args(argv)
    print(f"before: {load()}")
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.samples)
    plan = neurons.make_plan(y, args.classes, args.rule, "probe", 5, 0)
    rule = get_rule(args.rule)
    pool = ThreadPoolExecutor(2)
    kernel = partial(rule.score_block, labels=plan.y, folds=None, n_classes=args.classes)
    warm = rng.standard_normal((args.samples, 64), dtype=np.float32)
    t0 = time.perf_counter()
    kernel(warm)  # JIT compile or cache load: excluded from the timings below
    t_jit = time.perf_counter() - t0
    if args.rule == "centroid" and not np.array_equal(kernel(warm),
                                                      neurons._centroid_block(warm, plan)):
        raise AssertionError("compiled and numpy centroid kernels differ")
    t0 = time.perf_counter()  # dask's one-off first-compute setup, excluded like the JIT
    warm_arr = da.from_array(warm, chunks=(args.samples, warm.shape[1] // 2))
    warm_stats = warm_arr.map_blocks(kernel, dtype=np.float64,
                                     chunks=((plan.n_stats,), warm_arr.chunks[1]))
    dask.compute(warm_stats)
    dask.compute(warm_stats, scheduler="synchronous")
    t_dask = time.perf_counter() - t0
    t_read = t_read_cpu = t_read2 = t_score = t_score1 = t_score1_cpu = 0.0
    sk_x = None
    for start in range(0, args.features, args.block):
        w = min(args.block, args.features - start)
        x = rng.standard_normal((args.samples, w), dtype=np.float32)
        if sk_x is None:
            sk_x = x[:, :args.sklearn_neurons].copy()
        t0, c0 = time.perf_counter(), time.thread_time()
        x.sum(axis=0)
        t_read += time.perf_counter() - t0
        t_read_cpu += time.thread_time() - c0
        halves = (x[:, :w // 2], x[:, w // 2:])
        t0 = time.perf_counter()
        list(pool.map(lambda h: h.sum(axis=0), halves))
        t_read2 += time.perf_counter() - t0
        arr = da.from_array(x, chunks=(args.samples, rule.block))
        stats = arr.map_blocks(kernel, dtype=np.float64,
                               chunks=((plan.n_stats,), arr.chunks[1]))
        t0 = time.perf_counter()
        (threaded,) = dask.compute(stats)
        t_score += time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.thread_time()
        (single,) = dask.compute(stats, scheduler="synchronous")
        t_score1 += time.perf_counter() - t0
        t_score1_cpu += time.thread_time() - c0
        if not np.array_equal(threaded, single):
            raise AssertionError("threaded and synchronous scoring differ")
    after = load()
    t_sk = _sklearn_loop(sk_x, y, args.features) if args.rule == "centroid" else None
    gb = args.samples * args.features * 4 / 1e9
    print(f"after:  {after}")
    print(f"matrix: {args.samples} x {args.features} float32 ({gb:.1f} GB), "
          f"{args.classes} classes, generated in blocks of {args.block} columns, "
          f"scored in chunks of {rule.block} ({args.rule} rule)")
    print(f"kernel warm-up (numba compile or cache load, not timed below): {t_jit:.2f} s")
    print(f"dask warm-up (first compute in the process, not timed below): {t_dask:.2f} s")
    print(f"read pass (numpy sum, 1 thread): {t_read:.2f} s ({gb / t_read:.1f} GB/s), "
          f"cpu {t_read_cpu:.2f} s")
    print(f"read pass (numpy sum, 2 threads): {t_read2:.2f} s ({gb / t_read2:.1f} GB/s)")
    print(f"{args.rule} scoring, dask threads:  {t_score:.2f} s "
          f"(ratio {t_score / t_read:.2f} to the 1-thread read, "
          f"{t_score / t_read2:.2f} to the 2-thread read)")
    print(f"{args.rule} scoring, 1 thread:      {t_score1:.2f} s (ratio {t_score1 / t_read:.2f}), "
          f"cpu {t_score1_cpu:.2f} s (cpu ratio {t_score1_cpu / t_read_cpu:.2f})")
    if t_sk is not None and sk_x is not None:
        print(f"sklearn NearestCentroid loop, extrapolated from {sk_x.shape[1]} neurons: "
              f"{t_sk:.0f} s ({t_sk / t_score:.0f}x slower than the kernel)")
    print(f"scoring_read_ratio={t_score / t_read:.2f}")


def _sklearn_loop(sk_x: np.ndarray | None, y: np.ndarray, features: int) -> float | None:
    """Seconds a per-neuron scikit-learn NearestCentroid loop would take for ``features``."""
    if sk_x is None:
        return None
    from sklearn.neighbors import NearestCentroid
    t0 = time.perf_counter()
    for j in range(sk_x.shape[1]):
        col = sk_x[:, [j]]
        np.mean(NearestCentroid().fit(col, y).predict(col) == y)
    return (time.perf_counter() - t0) / sk_x.shape[1] * features


if __name__ == "__main__":
    main()
