"""Results that several analyses of one report process need, computed once, keyed on content.

``python -m sn_interp.analyses.report`` runs its analyses in one process on the same stores:
``find_super_neurons`` and ``sav_comparison`` both select SNs, run the selection null and ask
the model's zero-shot answers on the same probe and test splits, and the neuron cards reselect
each cell's SNs after the run. :func:`reuse` computes each of these once.

Keys are content, never names:

- an activation Dataset (:func:`acts_key`) by the content digests its store records (model
  revision, images, full prompt texts, labels), its own sample ids and labels (so a subset of a
  store, e.g. a smaller probe split, has its own key), its variables' names, dims, shapes and
  dtypes and its layer coordinates. A Dataset without those digests (activations built in
  memory, not by :func:`sn_interp.extract`) has no key and is never reused;
- samples (:func:`samples_key`) by :func:`sn_interp.fingerprint.content_digests` under the
  model's prompt, their ids, and the model's id and weight revision.

The memo lives in this process's memory only (least recently used first out, at most
:data:`MAX_ENTRIES` entries and about :data:`MAX_BYTES`); nothing is written to disk, so
nothing can go stale across runs; an analysis run with ``--overwrite`` clears it first, so it
recomputes everything from the stores. Reused values are shared objects: callers must not modify
them in place (no analysis does).

Example:
    >>> from sn_interp.analyses._reuse import reuse
    >>> calls = []
    >>> def compute():
    ...     calls.append(1)
    ...     return 42
    >>> reuse("example", ("key",), compute), reuse("example", ("key",), compute), len(calls)
    (42, 42, 1)
    >>> reuse("example", None, compute), len(calls)    # no key: always computed
    (42, 2)
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.sample import Sample

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Most values kept (a report of 3 models x 4 tasks needs about 40).
MAX_ENTRIES = 128
#: About the most bytes kept (estimated from the values' arrays).
MAX_BYTES = 2 * 2**30
#: Store attributes that identify what an activation Dataset's values were computed from.
CONTENT_ATTRS = ("model_revision", "images_sha256", "prompts_sha256", "labels_sha256")

_memo: collections.OrderedDict[tuple[str, Hashable], tuple[object, int]] = (
    collections.OrderedDict())


def acts_key(ds: xr.Dataset) -> str | None:
    """Content key of an activation Dataset, or None when it records no content digests."""
    if any(not ds.attrs.get(a) for a in CONTENT_ATTRS) or "sample_id" not in ds.coords:
        return None
    h = hashlib.sha256()
    for a in (*CONTENT_ATTRS, "model_id", "dtype", "position", "class_names"):
        h.update(f"{a}={ds.attrs.get(a, '')}\n".encode())
    h.update("\0".join(map(str, ds["sample_id"].values.tolist())).encode())
    if "label" in ds.coords or "label" in ds:
        h.update(np.ascontiguousarray(np.asarray(ds["label"].values, np.int64)).tobytes())
    for name in sorted(map(str, ds.data_vars)):
        var = ds[name]
        h.update(f"\n{name}:{var.dims}:{var.shape}:{var.dtype}".encode())
    for name in sorted(str(c) for c in ds.coords if "layer" in str(c)):
        h.update(f"\n{name}=".encode() + np.asarray(ds[name].values).tobytes())
    return h.hexdigest()


def samples_key(vlm: VLM, samples: Sequence[Sample]) -> str:
    """Content key of what a model is asked: its weights, the images, prompts and labels."""
    from sn_interp.fingerprint import content_digests

    h = hashlib.sha256(f"{vlm.model_id}\0{vlm.revision}\n".encode())
    for k, v in sorted(content_digests(samples, vlm.prompt).items()):
        h.update(f"{k}={v}\n".encode())
    h.update("\0".join(str(s.sample_id) for s in samples).encode())
    return h.hexdigest()


def _nbytes(value: object) -> int:
    for obj in (value, getattr(value, "table", None)):
        if isinstance(obj, xr.Dataset | xr.DataArray):
            return int(obj.nbytes)
    return 0


def reuse(kind: str, key: Hashable | None, compute: Callable[[], T]) -> T:
    """``compute()``, or the value it returned earlier in this process for ``(kind, key)``.

    ``key`` None (content unknown) always computes and keeps nothing.
    """
    if key is None:
        return compute()
    full = (kind, key)
    if full in _memo:
        _memo.move_to_end(full)
        log.info("reusing the %s computed earlier in this run (same content)", kind)
        return cast(T, _memo[full][0])  # stored by this function from compute()
    value = compute()
    _memo[full] = (value, _nbytes(value))
    while len(_memo) > MAX_ENTRIES or (len(_memo) > 1
                                       and sum(n for _, n in _memo.values()) > MAX_BYTES):
        _memo.popitem(last=False)
    return value


def clear() -> None:
    """Forget every reused value (tests; a long-lived notebook that wants the memory back)."""
    _memo.clear()
