"""extract(workers=...): dask.distributed worker processes fill one store concurrently."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import sn_interp as sn
from sn_interp import parallel

distributed = pytest.importorskip("distributed")


def _samples(n: int) -> list[sn.Sample]:
    rng = np.random.default_rng(5)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)),
                      "What digit is this?" + " Look closely." * (i % 3), label=i % 3,
                      class_names=("0", "1", "2"), sample_id=f"s{i}", prompt_id="p0",
                      task="toy")
            for i in range(n)]


def _digest(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def vlm():
    return sn.load_model("tiny-llava")


@pytest.fixture(scope="module")
def client():
    # allowed-failures=0: a task whose worker is killed fails the run (instead of being
    # retried), so the kill test also exercises the resume of a partial store.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            parallel.local_cluster(2) as cluster, distributed.Client(cluster) as c:
        yield c


def test_extraction_workers_keep_glibc_malloc_trimming(monkeypatch):
    """dask's default spawns workers with MALLOC_TRIM_THRESHOLD_=65536 and leaves it in the
    parent's environment; the extraction cluster spawns its workers without it, keeps the
    thread caps, and gives the parent its environment back."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a default cluster leaves it
    with parallel.local_cluster(1) as cluster, distributed.Client(cluster) as c:
        env = c.run(lambda: {k: os.environ.get(k)
                             for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
    assert list(env.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}]
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"


def _one_process(vlm, samples, store: Path, batch_size: int) -> None:
    """The single-process extraction at the workers' torch thread count (1): on some CPUs
    kernels split reductions by thread count, so 1 and 2 threads differ in the last bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sn.extract(vlm, samples, batch_size=batch_size, store=store, progress=False)
    finally:
        torch.set_num_threads(threads)


def _overlap(stream: list[dict]) -> bool:
    """Did tasks of two different workers run at the same time?"""
    spans = [(t["worker"], s["start"], s["stop"]) for t in stream for s in t["startstops"]
             if s["action"] == "compute"]
    return any(w1 != w2 and a1 < b2 and a2 < b1
               for w1, a1, b1 in spans for w2, a2, b2 in spans)


def test_two_worker_processes_fill_a_store_identical_to_one_process(vlm, client, tmp_path):
    samples = _samples(12)
    whole = tmp_path / "whole.zarr"
    _one_process(vlm, samples, whole, batch_size=2)
    par = tmp_path / "par.zarr"
    with distributed.get_task_stream(client) as ts:
        out = sn.extract(vlm, samples, batch_size=2, store=par, workers=client, progress=False)
    assert _digest(par) == _digest(whole)
    xr.testing.assert_identical(out.load(), sn.open_store(whole).load())
    workers = {t["worker"] for t in ts.data}
    assert len(workers) == 2 and _overlap(ts.data)  # both processes, concurrently
    loads = client.run(lambda: parallel.LOADS["n"])
    assert sorted(loads.values()) == [1, 1]  # each worker loaded the model once
    sn.extract(vlm, samples[:6], batch_size=2, store=tmp_path / "again.zarr",
               workers=client, progress=False)
    assert sorted(client.run(lambda: parallel.LOADS["n"]).values()) == [1, 1]  # cached


def test_worker_killed_mid_run_then_rerun_gives_identical_store(vlm, client, tmp_path):
    samples = _samples(40)
    whole = tmp_path / "whole.zarr"
    _one_process(vlm, samples, whole, batch_size=1)
    ref = xr.open_zarr(whole).load()
    part = tmp_path / "part.zarr"
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(sn.extract, vlm, samples, batch_size=1, store=part, workers=client,
                          progress=False)
        chunks = part / "done" / "c"
        deadline = time.monotonic() + 120
        while not (chunks.exists() and any(chunks.iterdir())):
            assert time.monotonic() < deadline and not run.done(), "no batch was written"
            time.sleep(0.005)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="worker died"):
            run.result(timeout=300)
    time.sleep(1.0)  # let tasks still running on the surviving worker finish their write
    done = xr.open_zarr(part)["done"].values.astype(bool)
    assert 0 < done.sum() < len(samples)
    # `done` never claims a batch whose data is not fully written
    got = xr.open_zarr(part).load()
    for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "z", "mlp_post",
                 "mlp_out"):
        np.testing.assert_array_equal(got[site].values[done], ref[site].values[done])
    sn.extract(vlm, samples, batch_size=1, store=part, workers=client, progress=False)
    assert _digest(part) == _digest(whole)


def test_workers_need_a_store_and_a_loadable_model(vlm, tmp_path):
    with pytest.raises(ValueError, match="store="):
        sn.extract(vlm, _samples(2), workers=2, progress=False)
    built = sn.models.wrap(vlm.model, vlm.processor, model_id="in-memory-model")
    with pytest.raises(ValueError, match="save_pretrained"):
        sn.extract(built, _samples(2), store=tmp_path / "a.zarr", workers=2, progress=False)
    assert not (tmp_path / "a.zarr").exists()


def test_analysis_on_a_scheduler_extracts_there_and_fills_the_same_stores(vlm, client,
                                                                         tmp_path):
    from sn_interp.analyses import _common, _data, find_super_neurons

    flags = ["--model", "tiny-llava", "--task", "shapes-color", "--n", "24", "--shots", "3",
             "--test-size", "6", "--k", "3", "--no-progress"]
    on_cluster = tmp_path / "w"
    with distributed.get_task_stream(client) as ts:
        find_super_neurons.main([*flags, "--scheduler", client.scheduler.address,
                                 "--stores", str(on_cluster / "stores"),
                                 "--out", str(on_cluster / "out")])
    assert _common.extraction_workers() is None  # the run's client is closed
    cfg = find_super_neurons.Config(models=("tiny-llava",), tasks=("shapes-color",), n=24,
                                    shots=3, test_size=6, k=3, progress=False,
                                    stores=str(tmp_path / "plain"))
    probe, test = _data.split(cfg, "shapes-color")
    ran = [t for t in ts.data if str(t["key"]).startswith("sn-extract")]
    n_batches = -(-len(probe) // cfg.batch_size) + -(-len(test) // cfg.batch_size)
    assert len(ran) == n_batches  # every batch of the probe and test stores ran on a worker
    for samples, tag in ((probe, "probe"), (test, "test")):
        plain = _data.store_path(cfg, vlm, samples, tag)
        plain.parent.mkdir(parents=True, exist_ok=True)
        _one_process(vlm, samples, plain, batch_size=cfg.batch_size)
        assert _digest(on_cluster / "stores" / plain.relative_to(tmp_path / "plain")) == \
            _digest(plain)


def test_workers_flag_starts_a_local_cluster_for_the_run():
    from sn_interp.analyses import _common, find_super_neurons

    with _common._scheduler(None, 2):
        workers = _common.extraction_workers()
        info = workers.scheduler_info(n_workers=-1)["workers"]
        assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
    assert _common.extraction_workers() is None and workers.status == "closed"
    with pytest.raises(SystemExit):
        find_super_neurons.main(["--workers", "0"])
