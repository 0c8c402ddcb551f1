"""Parallel extraction on ``dask.distributed``: N worker processes fill one activation store.

``sn.extract(vlm, samples, store=path, workers=N)`` starts a ``LocalCluster`` of ``N``
single-thread worker processes (``workers=client`` uses the workers of an existing
``distributed.Client`` instead, e.g. ``Client("tcp://scheduler:8786")``). The calling process
creates the store (metadata, coordinates, an all-false ``done``) and submits one task per
missing batch; each worker loads the model once (a per-process cache keyed by the model's
name, dtype, revision and device), runs the batches the scheduler gives it and writes each
into its own ``sample`` region, then marks it done (:func:`sn_interp.store.write_region`).
Batches are disjoint whole chunks, so concurrent writers never touch the same file. A worker
that dies is restarted by its nanny and its batch rescheduled; a run that stops altogether
is resumed by calling ``extract`` again with the same store.

Devices: with GPUs, every worker uses one. Worker ``i`` of a host (LocalCluster names its
workers 0..N-1; other clusters are ordered by worker name per host) takes
``cuda:(i mod visible GPUs)``, so start as many workers as GPUs per host; a worker that sees
a single GPU (dask-cuda, ``CUDA_VISIBLE_DEVICES`` per worker) uses ``cuda:0``. On CPUs each
worker runs torch with as many threads as the worker has (1 for a LocalCluster started here).
The LocalClusters started here (:func:`local_cluster`) keep glibc's default malloc trimming in
their workers, unlike dask's default (see there).

Bit-identity: a store filled by workers equals, byte for byte, one filled by a single process
running torch with the workers' thread count. At another thread count the values can differ
in the last bits on CPUs whose kernels split reductions by thread count (measured on an AMD
Zen 5 with torch 2.14: 1 vs 2 threads differ by up to 1.4e-5 relative at batch size 1); a
store resumed at a different thread count mixes the two roundings. Set
``torch.set_num_threads`` in the single process to compare the two exactly.

Workers load the model by its name (registry name, directory or hub id), so a model built
in memory (``sn.models.wrap``) must be saved first (``save_pretrained``) and loaded from its
directory. The store path must be visible to every worker (a shared file system). Worker
processes are spawned, so a script calling ``extract(workers=N)`` keeps its code under
``if __name__ == "__main__":`` (notebooks need nothing).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, Future, LocalCluster

    from sn_interp.models.vlm import VLM

log = logging.getLogger(__name__)
_TRIM = "MALLOC_TRIM_THRESHOLD_"  # the variable dask's nanny sets (see local_cluster)


def local_cluster(n_workers: int) -> LocalCluster:
    """A LocalCluster of ``n_workers`` single-thread worker processes for extraction.

    dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (so that freed
    memory goes back to the system at once), which also turns off glibc's adaptive mmap
    threshold: every large tensor a forward allocates is then fresh memory from the kernel,
    page faults included. An extraction worker holds one model and one batch at a time, so
    these workers are spawned without the variable (the thread caps ``OMP_NUM_THREADS`` etc.
    stay). A nanny also writes its variables into the environment of the process that
    started it, so after any default dask cluster this process carries
    ``MALLOC_TRIM_THRESHOLD_`` too: it is removed while the workers are spawned and put back
    after (a worker that a nanny restarts later inherits it). Measured on the 139M-parameter
    model of ``benchmarks/extraction.py``, a batch of 8 on one torch thread, outside dask:
    14.6 s per forward without the variable, 16.1 s with it (two such processes side by
    side: 15.0 vs 17.1 s).
    """
    import dask.config
    from distributed import LocalCluster

    inherited = os.environ.pop(_TRIM, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{_TRIM}": None}):
            return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                dashboard_address=":0")
    finally:
        if inherited is not None:
            os.environ[_TRIM] = inherited


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker process loads the caller's model: ``load_model(name, dtype, revision)``.

    ``expected_revision`` is the caller's model revision (a content hash for local weights);
    a worker that loads anything else refuses to write.
    """

    name: str
    dtype: str
    revision: str | None
    expected_revision: str

    @classmethod
    def of(cls, vlm: VLM) -> ModelRecipe:
        """The recipe of a model from :func:`sn_interp.load_model` (refuses other models)."""
        if vlm.remote:
            raise ValueError("workers= runs the model in local worker processes; a remote "
                             "(NDIF) model runs remotely already: drop workers=")
        if not vlm.meta.get("source"):
            raise ValueError(
                f"the model {vlm.model_id!r} was built in memory, and workers load models by "
                "name: save it (vlm.model.save_pretrained(d); vlm.processor.save_pretrained(d))"
                " and pass sn.load_model(d) to extract()")
        local = vlm.revision.startswith("local-")
        return cls(name=vlm.model_id, dtype=str(vlm.dtype).removeprefix("torch."),
                   revision=None if local else vlm.revision, expected_revision=vlm.revision)


def host_slots(workers: Mapping[str, Mapping[str, object]]) -> dict[str, int]:
    """Worker name -> its index among the workers of its host (ordered by name).

    ``workers`` is ``client.scheduler_info()["workers"]`` (address -> info with ``name``
    and ``host``). Integer names (a LocalCluster's) sort numerically.
    """
    by_host: dict[str, list[str]] = {}
    for addr, info in workers.items():
        by_host.setdefault(str(info.get("host", addr)), []).append(str(info.get("name", addr)))

    def key(name: str) -> tuple[int, int | str]:
        return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)

    return {name: i for names in by_host.values() for i, name in enumerate(sorted(names, key=key))}


def worker_device(slot: int | None, n_gpus: int) -> str:
    """The device of the worker with index ``slot`` on its host: one GPU each, or the CPU.

    Example:
        >>> [worker_device(i, 2) for i in range(3)], worker_device(0, 0)
        (['cuda:0', 'cuda:1', 'cuda:0'], 'cpu')
    """
    if n_gpus <= 0:
        return "cpu"
    if n_gpus == 1 or slot is None:
        return "cuda:0"
    return f"cuda:{slot % n_gpus}"


_LOCK = threading.Lock()
_CACHE: dict[tuple[ModelRecipe, str], VLM] = {}
#: Models loaded by this process (read by tests: one load per worker and model).
LOADS = {"n": 0}


def worker_model(recipe: ModelRecipe, slot: int | None) -> VLM:
    """This process's copy of the model, loaded on first use (one model kept at a time)."""
    import torch

    device = worker_device(slot, torch.cuda.device_count())
    key = (recipe, device)
    with _LOCK:
        if key not in _CACHE:
            from sn_interp.models import load_model

            _CACHE.clear()  # a new model replaces the last one: one model in memory per worker
            if device == "cpu":
                torch.set_num_threads(_worker_threads())
            vlm = load_model(recipe.name, dtype=recipe.dtype, revision=recipe.revision,
                             device_map=None if device == "cpu" else {"": device})
            if vlm.revision != recipe.expected_revision:
                raise RuntimeError(
                    f"worker loaded {recipe.name!r} at revision {vlm.revision}, but the caller's "
                    f"model is {recipe.expected_revision}: the weights changed on disk; reload "
                    "the model in the calling process (or restore the weights) and rerun")
            LOADS["n"] += 1
            log.info("worker %d loaded %s on %s", os.getpid(), recipe.name, device)
            _CACHE[key] = vlm
        return _CACHE[key]


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):
        return 1


def _this_slot(slots: dict[str, int]) -> int | None:
    from distributed import get_worker

    return slots.get(str(get_worker().name))


def fill(workers: int | Client, run_batch: Callable[[VLM, list], dict],
         write: Callable[[dict, int], None], recipe: ModelRecipe,
         batches: Sequence[tuple[int, list]], progress: bool) -> None:
    """Run ``run_batch`` + ``write`` for every ``(start, samples)`` batch on dask workers.

    Args:
        workers: A worker count (a LocalCluster is started and closed here) or a Client.
        run_batch: ``(vlm, samples) -> values``, executed on a worker.
        write: ``(values, start) -> None``, executed on the same worker after ``run_batch``.
        recipe: How workers load the model.
        batches: The batches still missing from the store.
        progress: Show a tqdm bar over finished batches.
    """
    from distributed import Client, as_completed

    own = not isinstance(workers, Client)
    if own:
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if multiprocessing.parent_process() is not None:
            raise RuntimeError(
                "extract(workers=N) ran while a worker process was starting: the worker "
                "re-imported your script. Put the script's code under "
                "`if __name__ == \"__main__\":` (worker processes are spawned)")
        cluster = local_cluster(int(workers))
        client = Client(cluster, set_as_default=False)
    else:
        client = workers
    try:
        run = uuid.uuid4().hex[:12]
        slots = host_slots(client.scheduler_info(n_workers=-1)["workers"])
        futures = [client.submit(_task, run_batch, write, recipe, slots, batch, start,
                                 key=f"sn-extract-{run}-{start}",
                                 priority=-i, pure=False)
                   for i, (start, batch) in enumerate(batches)]
        bar = tqdm(total=len(futures), desc="extract", unit="batch", disable=not progress)
        try:
            with bar:
                for future in as_completed(futures, loop=client.loop):
                    _result(future)
                    bar.update()
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        if own:
            client.close()
            cluster.close()


def _result(future: Future) -> None:
    """A finished batch's outcome; a dead worker becomes a message on how to resume."""
    from distributed.scheduler import KilledWorker

    try:
        future.result()
    except KilledWorker as err:
        raise RuntimeError(
            f"a worker died while extracting a batch ({err}). The store keeps every batch "
            "that finished (its `done` entries); rerun extract() with the same store to fill "
            "the rest") from err


def _task(run_batch, write, recipe: ModelRecipe, slots: dict[str, int], batch: list,
          start: int) -> int:
    vlm = worker_model(recipe, _this_slot(slots))
    write(run_batch(vlm, batch), start)
    return start
