"""Activation stores: zarr directories chunked along ``sample``, with resume bookkeeping.

A store is created whole before any activation is computed: every variable at its final shape,
every coordinate and attribute written, data chunks still empty. Each batch is then written
into its own ``sample`` region, and only after that its entries of the ``done`` variable are
set. A run killed at any point leaves a store whose ``done`` marks exactly the batches fully
written; a rerun computes the rest, so the final store equals an uninterrupted run's.

Stores are Zarr format 3 and open with plain ``xr.open_zarr(path)`` (no sn_interp import is
needed) or with any Zarr v3 reader: numbers use core data types and every string coordinate is
stored as variable-length UTF-8 (the ``string`` data type of the zarr-extensions registry), so
zarr-python reads them without ``UnstableSpecificationWarning``; attributes are JSON strings
and numbers. Metadata is consolidated into the root ``zarr.json`` (an extension flagged
``must_understand: false``, so readers that do not know it ignore it).

Example:
    >>> import xarray as xr
    >>> ds = xr.open_zarr("runs/acts.zarr")          # doctest: +SKIP
    >>> ds.resid_post.sel(layer=3).mean("sample")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from zarr.errors import ZarrUserWarning

log = logging.getLogger(__name__)

DONE = "done"

#: Attributes that must agree for a run to continue (or reuse) an existing store.
FINGERPRINT = ("model_id", "model_revision", "family", "prompt_template", "sites", "layers",
               "vision_layers", "dtype", "sample_ids_sha256", "schema_version")


class StoreMismatchError(ValueError):
    """An existing store was written for another model, prompt, site list or sample set."""


def create(path: str | Path, template: xr.Dataset, chunk: int) -> bool:
    """Write a store's metadata, coordinates and an all-false ``done`` (data left empty).

    The store is built under a private temporary name and renamed into place, so a reader
    never sees half a store and, when several workers start at once, exactly one creates it
    (the others get False and check its fingerprint instead).
    """
    path = Path(path)
    ds = vlen_strings(template)
    ds[DONE] = xr.zeros_like(ds["sample_id"], dtype=bool)
    ds[DONE].attrs = {"long_name": "sample written (resume bookkeeping)"}
    encoding = {name: {"chunks": (chunk,) + var.shape[1:]} for name, var in ds.data_vars.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with warnings.catch_warnings():
            # zarr-python flags consolidated v3 metadata as not (yet) in the core spec; it is
            # an ignorable extension for other readers and makes opening a wide store fast.
            warnings.filterwarnings("ignore", "Consolidated metadata", ZarrUserWarning)
            ds.to_zarr(tmp, mode="w-", compute=False, encoding=encoding, consolidated=True,
                       zarr_format=3)
        ds[[DONE]].to_zarr(tmp, mode="r+", region={"sample": slice(None)})
        try:
            tmp.rename(path)
        except OSError:
            if path.exists():  # another worker created it first
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def vlen_strings(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every fixed-width string variable as variable-length (object) strings.

    NumPy ``<U`` arrays map to Zarr v3's ``fixed_length_utf32``, which has no specification
    yet (zarr-python warns on write and read); object strings map to the ``string`` type.
    """
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    return ds.assign({name: ds[name].astype(object) for name in fixed}) if fixed else ds.copy()


def write_region(path: str | Path, batch: xr.Dataset, start: int) -> None:
    """Write one batch's data variables into ``sample[start:start+len]``, then mark it done."""
    stop = start + batch.sizes["sample"]
    region = {"sample": slice(start, stop)}
    data = batch.drop_vars(list(batch.coords)).drop_vars(DONE, errors="ignore")
    data.to_zarr(path, mode="r+", region=region)
    done = xr.Dataset({DONE: ("sample", np.ones(stop - start, dtype=bool))})
    done.to_zarr(path, mode="r+", region=region)


def pending(path: str | Path) -> np.ndarray:
    """Boolean mask over samples not yet written."""
    return ~xr.open_zarr(path)[DONE].values.astype(bool)


def check_fingerprint(path: str | Path, expected: dict[str, object]) -> None:
    """Refuse a store whose provenance differs from this run's, naming each difference."""
    attrs = xr.open_zarr(path).attrs
    diffs = [f"{key}: store has {attrs.get(key)!r}, this run {expected[key]!r}"
             for key in FINGERPRINT if key in expected and str(attrs.get(key)) != str(expected[key])]
    if diffs:
        raise StoreMismatchError(
            f"the store {path} was written by another run ({'; '.join(diffs)}). It was left "
            "untouched: pass a new store path, or delete this one to recompute it.")


def open_store(path: str | Path, *, complete: bool = True) -> xr.Dataset:
    """Open an activation store lazily (dask-backed), without the bookkeeping variable.

    Args:
        path: The zarr directory.
        complete: Refuse a store that an interrupted extraction left unfinished.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no activation store at {path}")
    ds = xr.open_zarr(path)
    if DONE in ds:
        missing = int((~ds[DONE].values.astype(bool)).sum())
        if complete and missing:
            raise ValueError(f"the store {path} is unfinished ({missing} of {ds.sizes['sample']} "
                             "samples missing): rerun extract() with the same store to resume")
        ds = ds.drop_vars(DONE)
    return ds


def config_of(ds: xr.Dataset) -> dict:
    """The extraction config recorded in a Dataset's ``config`` attribute."""
    return json.loads(ds.attrs.get("config", "{}"))
