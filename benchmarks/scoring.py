"""Whole ``find_super_neurons`` calls vs one numpy read pass over the same matrix (DESIGN 7).

N=1,000 samples x F=1,000,000 neurons (random float32 in memory, one site ``mlp_post`` of
100 layers x 10,000 units; labels balanced, shuffled), for 2 and 10 classes: the centroid and
threshold rules, each with ``score="probe"`` and ``score="cv"`` (5 folds). Each figure is the
wall time of the whole public call (dask scoring on the default threaded scheduler, neuron
table, ranking, ids) divided by one read pass (``x.sum(axis=0)`` over the whole matrix, one
thread; its median over passes taken before every call). Every call is made ``--repeats``
times, the four calls interleaved; the table gives the median and, apart, the first call
(the first call of each class count is the first to touch fresh memory for its outputs).
The last column divides the call by *one sort per neuron* (:func:`sort_pass`: each neuron's
samples copied contiguous and sorted as float32 by numpy on 2 threads, medians of 5 passes),
the threshold rule's floor: a read pass measures the memory, this the machine's sort, so the
two ratios together say how much of a threshold figure is the machine.
The table's ``id`` coordinate is computed on access (the call returns without formatting a
million ids), so the ``+ all ids`` column adds the time of ``table["id"].values``, every id
of the table materialised, to the median call.

Each call's scores and fitted parameters of the first ``--check`` units of layer 0 are
compared bit for bit with the rule's numpy reference (the centroid rule's
``_centroid_block``, the threshold rule's generic :meth:`Rule.score_block` from
``fit``/``predict``), run on those columns, and the ids of those rows with Python-formatted
ones. The first call of each rule in the process (numba cache load, dask set-up) runs on a
small matrix before the timings and is printed. The machine load (1-minute load average,
CPU pressure) is printed before and after, with the kernel's transparent-huge-page settings
and whether numpy asks for huge pages (``NUMPY_MADVISE_HUGEPAGE``): on a VM that returns
freed memory to its host, each fresh 2 MB huge page can cost milliseconds, so fresh output
memory costs several times more with numpy's default (ask) than without.

Run: ``.venv/bin/python benchmarks/scoring.py [--features 1000000] [--classes 2 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr

import sn_interp as sn
from sn_interp.probes import neurons
from sn_interp.probes.rules import get_rule
from sn_interp.probes.rules.base import Rule

RULES = ("centroid", "threshold")
SCORES = ("probe", "cv")


def load() -> str:
    """The 1-minute load average and the 10 s CPU pressure (share of time tasks waited)."""
    text = f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    psi = Path("/proc/pressure/cpu")
    if psi.exists():
        text += f", cpu pressure {psi.read_text().split()[1].split('=')[1]}%"
    return text


def make_acts(n: int, layers: int, units: int, n_classes: int, seed: int = 0) -> xr.Dataset:
    """Random float32 ``mlp_post`` (sample, layer, d_mlp) with balanced shuffled labels."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, layers, units), np.float32)
    for layer in range(layers):
        x[:, layer] = rng.standard_normal((n, units), dtype=np.float32)
    y = rng.permutation(np.arange(n) % n_classes)
    names = [f"class{c}" for c in range(n_classes)]
    coords = {"layer": np.arange(layers), "sample_id": ("sample", [f"s{i}" for i in range(n)]),
              "label": ("sample", y), "label_name": ("sample", [names[c] for c in y])}
    return xr.Dataset({"mlp_post": (("sample", "layer", "d_mlp"), x, {"long_name": "mlp"})},
                      coords=coords, attrs={"model_id": "random", "class_names": json.dumps(names)})


def read_pass(x: np.ndarray) -> float:
    t0 = time.perf_counter()
    x.sum(axis=0)
    return time.perf_counter() - t0


def sort_pass(x: np.ndarray, tile: int = 256) -> float:
    """One sort per neuron, the threshold rule's floor: every tile of ``tile`` columns copied
    transposed (each neuron's samples contiguous) and sorted as float32 with ``np.sort``,
    the columns split between 2 threads (both release the GIL), as the kernels run."""
    n, f = x.shape

    def part(j0: int, j1: int) -> None:
        buf = np.empty((tile, n), np.float32)
        for j in range(j0, j1, tile):
            b = buf[:min(tile, j1 - j)]
            np.copyto(b, x[:, j:j + len(b)].T)
            b.sort(axis=1)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(part, (0, f // 2), (f // 2, f)))
    return time.perf_counter() - t0


def reference(rule: str, x: np.ndarray, plan) -> np.ndarray:
    """The numpy reference stats of ``rule`` on columns ``x`` (sample, unit)."""
    if rule == "centroid":
        return neurons._centroid_block(x, plan)
    return Rule.score_block(get_rule(rule), x, plan.y, plan.folds, n_classes=plan.n_classes)


def check(found, acts: xr.Dataset, rule: str, score: str, n_check: int) -> None:
    """Scores, params and ids of units 0..n_check-1 of layer 0 equal the reference's."""
    y = acts["label"].values
    plan = neurons.make_plan(y, int(y.max()) + 1, rule, score, 5, 0)
    x = np.ascontiguousarray(acts["mlp_post"].values[:, 0, :n_check])
    ref = reference(rule, x, plan)
    t = found.table
    rows = np.flatnonzero((t["layer"].values == 0) & (t["unit"].values < n_check))
    sub = t.isel(neuron=rows[np.argsort(t["unit"].values[rows])])
    got_params = get_rule(rule).table_params(sub)
    if not (np.array_equal(sub["score"].values, ref[0])
            and np.array_equal(got_params, ref[2:])
            and sub["id"].values.tolist() == [f"blocks.0.mlp.hook_post[{u}]"
                                              for u in range(n_check)]):
        raise AssertionError(f"{rule}/{score}: find_super_neurons differs from the numpy "
                             "reference")


def memory_settings() -> str:
    """The kernel's transparent-huge-page modes and numpy's huge-page request."""
    thp = Path("/sys/kernel/mm/transparent_hugepage")
    modes = ", ".join(f"{f} {(thp / f).read_text().split('[')[1].split(']')[0]}"
                      for f in ("enabled", "defrag") if (thp / f).exists())
    asks = np._core.multiarray._get_madvise_hugepage()  # pyright: ignore[reportAttributeAccessIssue]
    return f"transparent huge pages: {modes or 'n/a'}; numpy asks for huge pages: {asks}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 10])
    ap.add_argument("--repeats", type=int, default=3, help="calls per configuration")
    ap.add_argument("--check", type=int, default=1000, help="units checked against numpy")
    args = ap.parse_args(argv)
    units = 10_000 if args.features >= 10_000 else args.features
    layers = max(1, args.features // units)
    print(f"before: {load()}")
    print(memory_settings())
    t0 = time.perf_counter()
    small = make_acts(60, 2, 300, 3)
    for rule in RULES:
        for score in SCORES:
            sn.find_super_neurons(small, rule=rule, score=score, progress=False)
    print(f"warm-up (numba cache load, dask set-up, not timed below): "
          f"{time.perf_counter() - t0:.2f} s")
    rows = []
    for n_classes in args.classes:
        acts = make_acts(args.samples, layers, units, n_classes)
        x = acts["mlp_post"].values.reshape(args.samples, -1)
        reads = [read_pass(x) for _ in range(3)]
        sorts = [sort_pass(x) for _ in range(3)]
        times: dict[tuple[str, str], list[float]] = {(r, s): [] for r in RULES for s in SCORES}
        ids_s: dict[tuple[str, str], list[float]] = {key: [] for key in times}
        for rep in range(args.repeats):
            for rule, score in times:
                reads.append(read_pass(x))
                t0 = time.perf_counter()
                found = sn.find_super_neurons(acts, k=20, rule=rule, score=score,
                                              progress=False)
                times[rule, score].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                found.table["id"].values  # noqa: B018  (every id of the table, materialised)
                ids_s[rule, score].append(time.perf_counter() - t0)
                if rep == 0:
                    check(found, acts, rule, score, min(args.check, units))
                print(f"  {n_classes} classes, {rule}/{score} call {rep + 1}: "
                      f"{times[rule, score][-1]:.2f} s, all ids {ids_s[rule, score][-1]:.2f} s"
                      f" (read pass so far {statistics.median(reads):.3f} s)"
                      + ("; numpy reference check passed" if rep == 0 else ""), flush=True)
                del found
        sorts += [sort_pass(x) for _ in range(2)]
        read, floor = statistics.median(reads), statistics.median(sorts)
        print(f"  {n_classes} classes: one sort per neuron {floor:.2f} s (medians of 5 passes "
              "before and after the calls)")
        for (rule, score), ts in times.items():
            rows.append((n_classes, rule, score, ts[0], statistics.median(ts),
                         statistics.median(ids_s[rule, score]), read, floor))
        del acts, x
    gb = args.samples * layers * units * 4 / 1e9
    print(f"after:  {load()}")
    print(f"matrix: {args.samples} x {layers * units} float32 ({gb:.1f} GB) in memory; "
          f"every call checked bit for bit against the numpy reference on "
          f"{min(args.check, units)} units; median of {args.repeats} calls")
    print("| classes | rule | score | first call s | median s | read pass s | x read pass | "
          "cv / probe | + all ids: x read pass | x one sort per neuron |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by = {(c, r, s): med for c, r, s, _, med, _, _, _ in rows}
    for c, r, s, first, med, ids, rd, floor in rows:
        cvp = f"{med / by[(c, r, 'probe')]:.2f}" if s == "cv" else ""
        print(f"| {c} | {r} | {s} | {first:.2f} | {med:.2f} | {rd:.3f} | {med / rd:.1f} | "
              f"{cvp} | {(med + ids) / rd:.1f} | {med / floor:.1f} |")


if __name__ == "__main__":
    main()
