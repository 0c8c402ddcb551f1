"""Shared input handling for the probes: labels, class names, sample coords, unit matrices.

Everything here reads an activation Dataset in the extraction schema (DESIGN section 3) and
never forces the whole of a dask-backed variable into memory.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph
from jaxtyping import Float, Int

from sn_interp.names import SAMPLE_COORDS, SITES_WITH_VISION, VISION_SITE

#: Dataset attrs a fitted selection keeps (provenance of the probe set).
KEPT_ATTRS = ("model_id", "model_revision", "family", "dtype", "task", "prompt_template",
              "position", "schema_version", "sn_interp_version", "n_layers", "n_heads", "d_head",
              "d_model", "d_mlp", "n_vision_layers")


def layer_dim(site: str) -> str:
    """The layer dimension of a site: ``vision_layer`` for the vision tower, else ``layer``."""
    return "vision_layer" if site == VISION_SITE.name else "layer"


def class_names_of(acts: xr.Dataset | xr.DataArray, n_min: int = 0) -> tuple[str, ...]:
    """Class names from ``attrs['class_names']`` (JSON list), else ``'0'``, ``'1'``, ..."""
    raw = acts.attrs.get("class_names")
    if raw:
        names = json.loads(raw) if isinstance(raw, str) else list(raw)
        return tuple(str(n) for n in names)
    return tuple(str(i) for i in range(n_min))


def probe_labels(acts: xr.Dataset) -> tuple[Int[np.ndarray, " sample"], tuple[str, ...]]:
    """Validated int64 labels and class names of a probe set; one clear error per problem."""
    if "label" not in acts.coords and "label" not in acts:
        raise ValueError("acts has no 'label' coordinate: scoring needs the labelled probe split "
                         "(extract samples whose Sample.label is set)")
    y = np.asarray(acts["label"].values).astype(np.int64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("acts.label must be a non-empty 1-D coordinate over 'sample'")
    if (y < 0).any():
        raise ValueError(f"{int((y < 0).sum())} of {y.size} samples have no label (label -1): "
                         "scoring needs every probe sample labelled")
    names = class_names_of(acts, int(y.max()) + 1)
    if y.max() >= len(names):
        raise ValueError(f"label {int(y.max())} is outside the class list {list(names)}")
    present = np.unique(y)
    if present.size < 2:
        raise ValueError(f"the probe set has a single class ({names[present[0]]!r}): a classifier "
                         "needs at least two classes; check the task split")
    missing = [names[c] for c in range(len(names)) if c not in set(present.tolist())]
    if missing:
        raise ValueError(f"class(es) {missing} have no probe samples; every class needs examples")
    return y, names


def sample_coords(obj: xr.Dataset | xr.DataArray) -> dict[str, tuple[str, np.ndarray]]:
    """The per-sample coords (``sample_id``, ``label``, ...) of ``obj``, as plain arrays."""
    return {c: ("sample", np.asarray(obj[c].values)) for c in SAMPLE_COORDS
            if c in obj.coords and obj[c].dims == ("sample",)}


def check_available(acts: xr.Dataset, needs: dict[str, list[int]], what: str) -> None:
    """Refuse with one message when a needed site or layer is absent from ``acts``."""
    problems = []
    for site, layers in needs.items():
        if site not in acts.data_vars:
            problems.append(f"site {site!r}")
            continue
        dim = layer_dim(site)
        have = set(np.asarray(acts[site][dim].values).tolist()) if dim in acts[site].coords \
            else set(range(acts.sizes.get(dim, 0)))
        lacking = sorted(set(layers) - have)
        if lacking:
            problems.append(f"{dim}(s) {lacking} of site {site!r}")
    if problems:
        sites = sorted(needs)
        layers = sorted({la for ls in needs.values() for la in ls})
        raise ValueError(f"{what} needs {', '.join(problems)}, missing from acts; extract them, "
                         f"e.g. sn.extract(vlm, samples, sites={tuple(sites)}, layers={layers})")


def unit_matrix(acts: xr.Dataset, site: str, layer: int, block: int) -> da.Array:
    """One site and layer as a dask array (sample, unit), chunked (all samples, ``block`` units).

    Units of ``z`` are flattened ``head * d_head + i``. The chunking does not depend on how
    ``acts`` is stored, so in-memory and zarr-backed inputs are scored in identical blocks.
    """
    data = _site_layer(acts, site, layer)
    n = int(data.shape[0])
    if isinstance(data, da.Array):
        data = data.rechunk({i: -1 for i in range(data.ndim)} if data.ndim > 2 else {0: -1})  # pyright: ignore[reportArgumentType]  (dask's stub: str only)
        data = data.reshape(n, -1)
        return data.rechunk((n, block))
    return _view_blocks(np.asarray(data).reshape(n, -1), block)


def _site_layer(acts: xr.Dataset, site: str, layer: int) -> np.ndarray | da.Array:
    """One site and layer's data, samples first (a numpy view or a dask array)."""
    if site not in SITES_WITH_VISION:
        raise ValueError(f"unknown site {site!r}; the sites are {list(SITES_WITH_VISION)}")
    return acts[site].sel({layer_dim(site): layer}).transpose("sample", ...).data


def unit_chunks(acts: xr.Dataset, site: str, layer: int, block: int
                ) -> list[Float[np.ndarray, "sample unit"]] | None:
    """The chunks :func:`unit_matrix` would give, as numpy views, or None when dask-backed."""
    data = _site_layer(acts, site, layer)
    if isinstance(data, da.Array):
        return None
    x = np.asarray(data).reshape(data.shape[0], -1)
    return [x[:, s:s + block] for s in range(0, x.shape[1], block)] if x.shape[1] else [x]


def n_chunks(acts: xr.Dataset, site: str, layer: int, block: int) -> int:
    """How many (all samples x ``block`` units) chunks :func:`unit_matrix` gives, unbuilt."""
    units = int(np.prod(_site_layer(acts, site, layer).shape[1:], dtype=np.int64))
    return max(1, -(-units // block))


def _view_blocks(x: Float[np.ndarray, "sample unit"], block: int) -> da.Array:
    """``x`` as a dask array of (all samples, ``block`` units) chunks that are views of it.

    ``da.from_array`` copies a numpy input and hashes every byte of it to name the graph,
    which costs more than scoring it; the blocks here are views and the name is random (no
    graph caching across calls is lost: each call scores its own input once).
    """
    n, w = x.shape
    name = f"unit-matrix-{uuid.uuid4().hex}"
    starts = range(0, w, block) if w else [0]
    dsk = {(name, 0, j): x[:, s:s + block] for j, s in enumerate(starts)}
    chunks = ((n,), tuple(min(block, w - s) for s in starts) if w else (0,))
    graph = HighLevelGraph.from_collections(name, cast(Any, dsk), dependencies=())
    # dask's constructor takes (graph, name, chunks, dtype); its type stub declares one argument
    return cast(Any, da.Array)(graph, name, chunks, dtype=x.dtype)


def unit_values(acts: xr.Dataset, site: str, layer: int, units: Int[np.ndarray, " unit"]
                ) -> Float[np.ndarray, "sample unit"]:
    """float32 values (sample, len(units)) of the given flat units of one site and layer."""
    var = acts[site].sel({layer_dim(site): layer}).transpose("sample", ...)
    n = var.shape[0]
    data = var.data
    flat = data.reshape(n, -1) if isinstance(data, np.ndarray) else \
        data.rechunk({i: -1 for i in range(1, data.ndim)}).reshape(n, -1)
    out = flat[:, np.asarray(units)]
    return np.asarray(out.compute() if isinstance(out, da.Array) else out, dtype=np.float32)
