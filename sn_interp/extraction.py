"""``sn.extract()``: every requested scalar at the last prompt token, as a labelled xr.Dataset.

Output schema (DESIGN section 3): variables ``resid_pre``, ``resid_mid``, ``resid_post``,
``attn_out``, ``mlp_out`` (sample, layer, d_model), ``z`` (sample, layer, head, d_head),
``mlp_post`` (sample, layer, d_mlp) and optionally ``vision_resid_post`` (sample,
vision_layer, d_vision); per-sample coords ``sample_id``, ``label``, ``label_name``, ``split``,
``task``, ``prompt_id``, ``image_id``; provenance attrs.

(The module is ``extraction`` rather than ``extract`` so that the function ``sn.extract`` is
never shadowed by a submodule of the same name.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dask.array
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sn_interp import __version__, parallel
from sn_interp import store as stores
from sn_interp.capture import capture
from sn_interp.fingerprint import content_digests, module_sha256
from sn_interp.models.vlm import VLM
from sn_interp.names import (
    HEAD,
    LAYER,
    POSITION,
    SAMPLE,
    SCHEMA_VERSION,
    SITES_WITH_VISION,
    VISION_LAYER,
    VISION_SITE,
    check_sites,
)
from sn_interp.sample import Sample, sample_coords, sample_ids

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

log = logging.getLogger(__name__)

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64}


def extract(vlm: VLM, samples: Iterable[Sample], *, sites: str | Sequence[str] | None = None,
            layers: int | Sequence[int] | None = None,
            vision_layers: Sequence[int] | None = None, batch_size: int = 8,
            store: str | Path | None = None, dtype: str = "float32",
            shard: tuple[int, int] | None = None, overwrite: bool = False,
            workers: int | Client | None = None,
            progress: bool = True) -> xr.Dataset:
    """Read every requested site of every requested layer at the last prompt token.

    One nnsight trace per batch; the model stops after the deepest requested read.

    Args:
        vlm: A model from :func:`sn_interp.load_model`.
        samples: Any sequence of :class:`sn_interp.Sample` (a Task split is one).
        sites: Site names (default: the seven language-model sites). Add
            ``"vision_resid_post"`` for vision-tower neurons.
        layers: Language-model layers (default: all), 0-based.
        vision_layers: Vision blocks for ``vision_resid_post`` (default: all).
        batch_size: Samples per forward pass (left-padded).
        store: A zarr directory to stream into. Resumes an interrupted run; reuses a finished
            one without running the model; refuses one written for other content (other
            images, prompt text, labels, sample ids, model weights, sites or layers), naming
            what changed and leaving it untouched. Batches whose chunk files were lost or
            truncated are detected and recomputed.
        dtype: Storage dtype (``float32``, ``float16`` or ``float64``).
        shard: ``(i, n)``: this worker fills only batches ``i, i+n, i+2n, ...`` of ``store``
            (needs ``store``). Run ``n`` workers (dask workers, a job array) on the same store
            to extract in parallel; any rerun without ``shard`` fills what is still missing.
        overwrite: Delete an existing ``store`` whose content fingerprint differs from this
            run's and rebuild it (a matching store is still reused or resumed). Not with
            ``shard`` (workers would delete each other's work).
        workers: Fill ``store`` with dask.distributed worker processes (needs ``store``): an
            int starts a LocalCluster of that many single-thread workers for this call; a
            ``distributed.Client`` uses its workers. Each worker loads the model once (by
            name: a model from :func:`sn_interp.load_model`) and takes one GPU when there
            are GPUs (:mod:`sn_interp.parallel`). The store equals a single-process run's.
        progress: Show a tqdm bar over batches.

    Returns:
        The activation Dataset (dask-backed when ``store`` is given).

    Example:
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, test = sn.load_task("digits", n=60).split(shots=2)
        >>> acts = sn.extract(vlm, probe, sites=["resid_post", "z"], layers=[0])
        >>> acts.resid_post.dims
        ('sample', 'layer', 'd_model')
    """
    samples = _check_samples(samples)
    spec = _Spec.make(vlm, sites, layers, vision_layers, dtype)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if shard is not None and (store is None or not 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard={shard} needs store= and 0 <= i < n")
    if overwrite and shard is not None:
        raise ValueError("overwrite=True with shard= would let workers delete each other's "
                         "work: rebuild the store once without shard, then run the workers")
    recipe = None
    if workers is not None:
        if store is None:
            raise ValueError("workers= fills a store: pass store= (a zarr path every worker "
                             "can reach)")
        recipe = parallel.ModelRecipe.of(vlm)
    template = _template(vlm, samples, spec, lazy=store is not None)
    if store is None:
        return _extract_memory(vlm, samples, spec, template, batch_size, progress)
    return _extract_store(vlm, samples, spec, template, Path(store).resolve(), batch_size,
                          progress, shard, overwrite, (workers, recipe))


class _Spec:
    """What one extraction reads: sites, layers, storage dtype."""

    def __init__(self, sites: tuple[str, ...], layers: list[int], vision_layers: list[int],
                 dtype: str) -> None:
        self.sites, self.layers, self.vision_layers, self.dtype = sites, layers, vision_layers, dtype

    @classmethod
    def make(cls, vlm: VLM, sites, layers, vision_layers, dtype: str) -> _Spec:
        default = sites is None
        sites = check_sites(sites)
        if dtype not in _NP_DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(_NP_DTYPES)}")
        n = vlm.dims.n_layers
        layers = _layer_list(layers, n, "layers")
        sites = _present(vlm, sites, layers, default)
        vis = _layer_list(vision_layers, vlm.dims.n_vision_layers, "vision_layers") \
            if VISION_SITE.name in sites else []
        return cls(sites, layers, vis, dtype)

    @property
    def lm_sites(self) -> tuple[str, ...]:
        return tuple(s for s in self.sites if s != VISION_SITE.name)

    def requests(self) -> list[tuple[str, int]]:
        reqs = [(s, layer) for layer in self.layers for s in self.lm_sites]
        return reqs + [(VISION_SITE.name, v) for v in self.vision_layers]


def _present(vlm: VLM, sites: tuple[str, ...], layers: list[int],
             default: bool) -> tuple[str, ...]:
    """Sites that exist on every requested layer; an explicit absent one is an error.

    Hybrid models lack some sites on some layers (e.g. ``z`` on linear-attention layers). By
    default those sites are left out (logged); asked for explicitly, the error names the
    layers that have them.
    """
    kept = []
    for site in sites:
        missing = [la for la in layers if site != VISION_SITE.name
                   and la not in vlm.site_layers(site)]
        if not missing:
            kept.append(site)
        elif default:
            log.info("%s: %s is absent on layers %s; left out of the default sites (pass "
                     "sites=[%r], layers=%s to read it)", vlm.model_id, site, missing, site,
                     list(vlm.site_layers(site)))
        else:
            raise ValueError(f"{vlm.model_id} has no {site} on layers {missing}; it has "
                             f"{site} on layers {list(vlm.site_layers(site))}: pass those as "
                             "layers=, or leave the site out")
    return tuple(kept)


def _layer_list(layers: int | Sequence[int] | None, n: int, what: str) -> list[int]:
    if layers is None:
        return list(range(n))
    if isinstance(layers, int | np.integer):
        layers = [int(layers)]
    out = sorted({int(x) for x in layers})
    if not out:
        raise ValueError(f"{what} is empty; pass None for all {n}")
    bad = [x for x in out if not 0 <= x < n]
    if bad:
        raise ValueError(f"{what} {bad} out of range: the model has {n} (0..{n - 1})")
    return out


def _check_samples(samples: Iterable[Sample]) -> list[Sample]:
    samples = list(samples)
    if not samples:
        raise ValueError("extract() got no samples")
    for i, s in enumerate(samples):
        if not isinstance(s, Sample):
            raise TypeError(f"item {i} is a {type(s).__name__}, not an sn_interp.Sample")
    ids = sample_ids(samples)
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise ValueError(f"duplicate sample ids {dup}: give each Sample a unique sample_id")
    return samples


def _template(vlm: VLM, samples: list[Sample], spec: _Spec, *, lazy: bool) -> xr.Dataset:
    """An all-NaN Dataset of the final shape with coords and attrs (data filled later).

    ``lazy`` builds the data as dask arrays, so a store's template costs no memory.
    """
    n, d = len(samples), vlm.dims
    coords = sample_coords(samples)
    coords[LAYER] = (LAYER, np.array(spec.layers, dtype=np.int64))
    if "z" in spec.sites:
        coords[HEAD] = (HEAD, np.arange(d.n_heads, dtype=np.int64))
    if spec.vision_layers:
        coords[VISION_LAYER] = (VISION_LAYER, np.array(spec.vision_layers, dtype=np.int64))
    data = {}
    for site in spec.sites:
        info = SITES_WITH_VISION[site]
        n_l = len(spec.vision_layers) if site == VISION_SITE.name else len(spec.layers)
        shape = (n, n_l, *d.width(site))
        full = dask.array.full if lazy else np.full
        data[site] = ((SAMPLE, *info.dims), full(shape, np.nan, dtype=_NP_DTYPES[spec.dtype]),
                      {"long_name": info.long_name, "hook": info.hook, "units": "activation"})
    attrs = _attrs(vlm, samples, spec)
    if lazy and vlm.revision == "in-memory":  # wrap()ped weights: no files to name them by
        attrs["weights_sha256"] = module_sha256(vlm.model)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _joined(values: Iterable[str]) -> str:
    return ",".join(sorted({v for v in values if v}))


def _attrs(vlm: VLM, samples: list[Sample], spec: _Spec) -> dict[str, str | int]:
    classes = {s.class_names for s in samples if s.class_names}
    if len(classes) > 1:
        raise ValueError("samples come from tasks with different class lists; extract each "
                         "task separately")
    ids = "\n".join(sample_ids(samples))
    config = {"sites": list(spec.sites), "layers": spec.layers,
              "vision_layers": spec.vision_layers, "dtype": spec.dtype,
              "n_samples": len(samples), "position": POSITION}
    d = vlm.dims
    return {
        "model_id": vlm.model_id, "model_revision": vlm.revision, "family": vlm.family,
        "architecture": vlm.meta.get("architecture", ""), "dtype": spec.dtype,
        "model_dtype": str(vlm.dtype).removeprefix("torch."),
        "task": _joined(s.task for s in samples),
        "prompt_template": _joined(s.prompt_id for s in samples),
        "answer_format": _joined(s.answer_format for s in samples),
        "class_names": json.dumps(list(next(iter(classes), ()))),
        "position": POSITION, "sn_interp_version": __version__,
        "schema_version": SCHEMA_VERSION, "config": json.dumps(config, sort_keys=True),
        "sites": ",".join(spec.sites), "layers": ",".join(map(str, spec.layers)),
        "vision_layers": ",".join(map(str, spec.vision_layers)),
        "sample_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
        **content_digests(samples, vlm.prompt),
        "n_layers": d.n_layers, "n_heads": d.n_heads, "d_head": d.d_head,
        "d_model": d.d_model, "d_mlp": d.d_mlp, "n_vision_layers": d.n_vision_layers,
    }


def _run_batch(vlm: VLM, batch: list[Sample], spec: _Spec) -> dict[str, np.ndarray]:
    """One traced forward; site -> array [batch, n_layers, *width]."""
    reads = capture(vlm, vlm.encode(batch), spec.requests())
    out = {}
    for site in spec.sites:
        vision = site == VISION_SITE.name
        layer_ids = spec.vision_layers if vision else spec.layers
        width = vlm.dims.width(site)
        stacked = [reads[(site, lay)].float().numpy().reshape(len(batch), *width)
                   for lay in layer_ids]
        out[site] = np.stack(stacked, axis=1).astype(_NP_DTYPES[spec.dtype])
    return out


def _write_batch(path: Path, dims: dict[str, tuple[str, ...]], values: dict[str, np.ndarray],
                 start: int) -> None:
    stores.write_region(path, xr.Dataset({site: (dims[site], arr)
                                          for site, arr in values.items()}), start)


def _extract_memory(vlm, samples, spec, template, batch_size, progress) -> xr.Dataset:
    starts = range(0, len(samples), batch_size)
    for start in tqdm(starts, desc="extract", unit="batch", disable=not progress):
        values = _run_batch(vlm, samples[start:start + batch_size], spec)
        for site, arr in values.items():
            template[site].values[start:start + len(arr)] = arr
    return template


def _extract_store(vlm, samples, spec, template, path, batch_size, progress,
                   shard, overwrite, pool=(None, None)) -> xr.Dataset:
    if path.exists() and overwrite and stores.differences(path, template.attrs):
        stores.remove(path)
        log.info("overwrite: removed %s (written for other content)", path)
    if path.exists() or not stores.create(path, template, batch_size):
        stores.check_fingerprint(path, template.attrs)
        stores.forget_lost_chunks(path)
    chunk = xr.open_zarr(path)[stores.DONE].encoding.get("chunks", (batch_size,))[0]
    if chunk != batch_size:
        log.info("resuming %s with its batch size %d (asked %d)", path, chunk, batch_size)
    todo = stores.pending(path)
    starts = [s for s in range(0, len(samples), chunk) if todo[s:s + chunk].any()
              and (shard is None or (s // chunk) % shard[1] == shard[0])]
    if not starts:
        log.info("store %s is complete; nothing to extract", path)
    dims = {site: template[site].dims for site in spec.sites}
    write = functools.partial(_write_batch, path, dims)
    if pool[0] is not None and starts:
        run = functools.partial(_run_batch, spec=spec)
        parallel.fill(pool[0], run, write, pool[1],
                      [(s, samples[s:s + chunk]) for s in starts], progress)
        starts = []
    for start in tqdm(starts, desc="extract", unit="batch", disable=not progress):
        write(_run_batch(vlm, samples[start:start + chunk], spec), start)
    return stores.open_store(path, complete=shard is None)
