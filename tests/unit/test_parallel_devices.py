"""One GPU per extraction worker: the assignment, tested without a GPU."""

from __future__ import annotations

from sn_interp.parallel import host_slots, worker_device


def test_local_cluster_workers_take_one_gpu_each():
    workers = {f"tcp://127.0.0.1:{4000 + i}": {"name": i, "host": "127.0.0.1"}
               for i in (3, 0, 10, 1, 2)}
    slots = host_slots(workers)
    assert slots == {"0": 0, "1": 1, "2": 2, "3": 3, "10": 4}  # numeric, not string, order
    assert [worker_device(slots[str(i)], 4) for i in (0, 1, 2, 3, 10)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0"]


def test_slots_count_per_host_and_cpu_without_gpus():
    workers = {"tcp://a:1": {"name": "a-w1", "host": "a"}, "tcp://a:2": {"name": "a-w0", "host": "a"},
               "tcp://b:1": {"name": "b-w0", "host": "b"}}
    slots = host_slots(workers)
    assert slots == {"a-w0": 0, "a-w1": 1, "b-w0": 0}
    assert {n: worker_device(s, 2) for n, s in slots.items()} == {
        "a-w0": "cuda:0", "a-w1": "cuda:1", "b-w0": "cuda:0"}
    assert worker_device(1, 0) == "cpu"          # no GPU: CPU
    assert worker_device(5, 1) == "cuda:0"       # one visible GPU per worker (dask-cuda)
    assert worker_device(None, 4) == "cuda:0"    # a worker that joined later
