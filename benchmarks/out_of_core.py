"""Scoring a store larger than memory: ``find_super_neurons`` under a memory cap (DESIGN 6-7).

Builds a Zarr activation store of random float32 ``mlp_post`` activations (chunked by
(sample batch, layer) as extraction writes them; random normal values barely compress) of
``--factor`` (default 2.8) times the memory cap raw, at least twice the cap on disk, then scores it with
``sn.find_super_neurons`` on a ``dask.distributed`` LocalCluster of one worker process
(``--threads`` threads) whose ``memory_limit`` is the cap, as a hard limit (no spilling or
pausing): the nanny kills a worker whose resident memory passes 95% of it, so a run that
finishes stayed under the cap. Printed: the
cap, the store size, the worker's and this process's peak resident memory (``ru_maxrss``),
the scoring time and one read pass over the store (every chunk read and summed, on the same
worker), both from disk: before each pass the store's pages are dropped from the page cache
(``posix_fadvise(DONTNEED)`` on its files only). The store is deleted at the end unless
``--keep``.

Run: ``.venv/bin/python benchmarks/out_of_core.py [--cap-gb 2] [--dir runs/]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from zarr.errors import ZarrUserWarning

import sn_interp as sn


def drop_cache(path: Path) -> None:
    """Evict ``path``'s files from the page cache (the next read comes from disk)."""
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def build(path: Path, n: int, layers: int, units: int, chunk: int, n_classes: int) -> None:
    """A store of random activations with labels, written chunk by chunk (bounded memory)."""
    rs = da.random.RandomState(0)
    data = rs.standard_normal((n, layers, units), chunks=(chunk, layers, units)).astype(
        np.float32)
    y = np.random.default_rng(0).permutation(np.arange(n) % n_classes)
    names = [f"class{c}" for c in range(n_classes)]
    ds = xr.Dataset({"mlp_post": (("sample", "layer", "d_mlp"), data,
                                  {"long_name": "MLP post-activation"})},
                    coords={"layer": np.arange(layers),
                            "sample_id": ("sample", np.array([f"s{i}" for i in range(n)], object)),
                            "label": ("sample", y),
                            "label_name": ("sample", np.array([names[c] for c in y], object))},
                    attrs={"model_id": "random", "class_names": json.dumps(names)})
    with warnings.catch_warnings():  # consolidated v3 metadata, as sn_interp's own stores
        warnings.filterwarnings("ignore", "Consolidated metadata", ZarrUserWarning)
        ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=True,
                   encoding={"mlp_post": {"chunks": (chunk, 1, units)}})  # as extraction


def size_gb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap-gb", type=float, default=2.0, help="worker memory limit")
    ap.add_argument("--factor", type=float, default=2.8,
                    help="raw store size / cap (compression takes about 8%% off)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--units", type=int, default=10_000, help="units per layer")
    ap.add_argument("--chunk", type=int, default=8, help="samples per store chunk")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rule", default="centroid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where the store goes (default tmp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    cap = int(args.cap_gb * 1e9)
    layers = int(np.ceil(args.factor * cap / (args.samples * args.units * 4)))
    root = Path(tempfile.mkdtemp(prefix="sn-out-of-core-", dir=args.dir))
    path = root / "acts.zarr"
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    try:
        t0 = time.perf_counter()
        build(path, args.samples, layers, args.units, args.chunk, args.classes)
        print(f"store: {path} {args.samples} samples x {layers} layers x {args.units} units, "
              f"{size_gb(path):.2f} GB on disk, built in {time.perf_counter() - t0:.0f} s")
        # the cap is a hard limit: no spilling or pausing, the nanny kills the worker at 95%
        limits = {"distributed.worker.memory.target": False,
                  "distributed.worker.memory.spill": False,
                  "distributed.worker.memory.pause": False,
                  "distributed.worker.memory.terminate": 0.95}
        with dask.config.set(limits), \
                LocalCluster(n_workers=1, threads_per_worker=args.threads, processes=True,
                             memory_limit=cap, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            acts = sn.open_store(path)
            drop_cache(path)
            t0 = time.perf_counter()
            acts["mlp_post"].sum("sample").compute()
            t_read = time.perf_counter() - t0
            print(f"read pass from disk: {t_read:.1f} s ({size_gb(path) / t_read:.2f} GB/s)",
                  flush=True)
            drop_cache(path)
            t0 = time.perf_counter()
            found = sn.find_super_neurons(acts, k=20, rule=args.rule, progress=False)
            t_score = time.perf_counter() - t0
            worker_peak = max(client.run(peak_rss_gb).values())
        n_neurons = found.table.sizes["neuron"]
        if size_gb(path) < 2 * cap / 1e9:
            raise AssertionError("the store is smaller than twice the cap: raise --factor")
        print(f"memory cap (worker memory_limit): {cap / 1e9:.2f} GB; store / cap = "
              f"{size_gb(path) / (cap / 1e9):.2f}")
        print(f"peak resident memory: worker {worker_peak:.2f} GB "
              f"({worker_peak / (cap / 1e9):.0%} of the cap), this process {peak_rss_gb():.2f} GB")
        print(f"find_super_neurons ({args.rule}, {n_neurons} neurons) from disk: "
              f"{t_score:.1f} s = {t_score / t_read:.2f} read passes")
        print(f"out_of_core_read_ratio={t_score / t_read:.2f} "
              f"peak_over_cap={worker_peak / (cap / 1e9):.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
