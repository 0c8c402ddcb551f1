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
from typing import cast

import numpy as np
import xarray as xr
from jaxtyping import Bool
from zarr.errors import ZarrUserWarning

log = logging.getLogger(__name__)

DONE = "done"

#: Attributes that must agree for a run to continue (or reuse) an existing store, with what
#: a difference in each means. The content hashes come from :mod:`sn_interp.fingerprint`.
FINGERPRINT = {
    "model_id": "another model",
    "model_revision": "other model weights or config (a re-saved checkpoint)",
    "family": "another model family",
    "prompt_template": "another prompt template",
    "sites": "other sites", "layers": "other layers", "vision_layers": "other vision layers",
    "dtype": "another storage dtype",
    "sample_ids_sha256": "another sample list (other sample ids or order)",
    "images_sha256": "other images (image bytes changed)",
    "prompts_sha256": "other question or prompt text",
    "labels_sha256": "other labels or class list",
    "weights_sha256": "other in-memory model weights",
    "schema_version": "another store schema",
}

REBUILD = ("rebuild it with sn.extract(..., overwrite=True) (analyses: --overwrite-stores), "
           "or pass another store path")


class StoreMismatchError(ValueError):
    """An existing store was written for other content (model, prompt, samples, weights).

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.check_fingerprint(path, {"model_id": "other"})
        Traceback (most recent call last):
        sn_interp.store.StoreMismatchError: the store ... was written for other content (another model: ...
    """


class StoreDamagedError(ValueError):
    """A store's chunk files were deleted or truncated after it was written.

    Example:
        >>> from sn_interp.store import StoreDamagedError
        >>> issubclass(StoreDamagedError, ValueError)      # raised by extract / open on lost chunks
        True
    """


def create(path: str | Path, template: xr.Dataset, chunk: int) -> bool:
    """Write a store's metadata, coordinates and an all-false ``done`` (data left empty).

    The store is built under a private temporary name and renamed into place, so a reader
    never sees half a store and, when several workers start at once, exactly one creates it
    (the others get False and check its fingerprint instead).

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.pending(path).tolist()                     # nothing written yet
        [True, True, True, True]
        >>> store.create(path, ds, chunk=2)                  # exists already: another worker's
        False
    """
    path = Path(path)
    ds = vlen_strings(template)
    ds[DONE] = xr.zeros_like(ds["sample_id"], dtype=bool)
    ds[DONE].attrs = {"long_name": "sample written (resume bookkeeping)"}
    encoding = {name: {"chunks": _chunks(var, chunk)} for name, var in ds.data_vars.items()}
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


def _chunks(var: xr.DataArray, chunk: int) -> tuple[int, ...]:
    """``chunk`` samples by one layer by the whole width: scoring reads each layer alone, so
    a chunk spanning every layer would be read once per layer."""
    if var.ndim >= 2 and var.dims[1] in ("layer", "vision_layer"):
        return (chunk, 1, *var.shape[2:])
    return (chunk, *var.shape[1:])


def vlen_strings(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every fixed-width string variable as variable-length (object) strings.

    NumPy ``<U`` arrays map to Zarr v3's ``fixed_length_utf32``, which has no specification
    yet (zarr-python warns on write and read); object strings map to the ``string`` type.

    Example:
        >>> import xarray as xr
        >>> from sn_interp.store import vlen_strings
        >>> ds = xr.Dataset(coords={"sample_id": ("sample", ["a", "bc"])})
        >>> ds.sample_id.dtype.kind, vlen_strings(ds).sample_id.dtype.kind
        ('U', 'O')
    """
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    return ds.assign({name: ds[name].astype(object) for name in fixed}) if fixed else ds.copy()


def write_region(path: str | Path, batch: xr.Dataset, start: int) -> None:
    """Write one batch's data variables into ``sample[start:start+len]``, then mark it done.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.write_region(path, ds.isel(sample=slice(0, 2)), start=0)
        >>> store.pending(path).tolist()
        [False, False, True, True]
    """
    stop = start + batch.sizes["sample"]
    region = {"sample": slice(start, stop)}
    data = batch.drop_vars(list(batch.coords)).drop_vars(DONE, errors="ignore")
    data.to_zarr(path, mode="r+", region=region)
    done = xr.Dataset({DONE: ("sample", np.ones(stop - start, dtype=bool))})
    done.to_zarr(path, mode="r+", region=region)


def pending(path: str | Path) -> Bool[np.ndarray, " sample"]:
    """Boolean mask over samples not yet written.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.write_region(path, ds.isel(sample=slice(2, 4)), start=2)
        >>> store.pending(path).tolist()                     # (sample,) bool
        [True, True, False, False]
    """
    return ~xr.open_zarr(path)[DONE].values.astype(bool)


def differences(path: str | Path, expected: dict[str, object]) -> list[str]:
    """What differs between a store's fingerprint and ``expected`` (empty: the same content).

    A store that cannot be opened, or one written before content fingerprints, differs.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.differences(path, {"model_id": "m"})
        []
        >>> store.differences(path, {"model_id": "m2"})
        ["another model: model_id is 'm' in the store, 'm2' in this run"]
    """
    try:
        attrs = xr.open_zarr(path).attrs
    except Exception as err:  # noqa: BLE001 - any unreadable store is "different"
        return [f"the store cannot be opened ({type(err).__name__}: {err})"]
    diffs = []
    for key, meaning in FINGERPRINT.items():
        if key not in expected or str(attrs.get(key)) == str(expected[key]):
            continue
        if key not in attrs:
            diffs.append(f"{key} not recorded (written by an older sn_interp)")
        else:
            diffs.append(f"{meaning}: {key} is {_short(attrs[key])} in the store, "
                         f"{_short(expected[key])} in this run")
    return diffs


def _short(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 24 else text[:12] + "...")


def check_fingerprint(path: str | Path, expected: dict[str, object]) -> None:
    """Refuse a store whose content fingerprint differs from this run's, naming each difference.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.check_fingerprint(path, {"model_id": "m"})   # same content: no error
    """
    diffs = differences(path, expected)
    if diffs:
        raise StoreMismatchError(
            f"the store {path} was written for other content ({'; '.join(diffs)}). It was left "
            f"untouched: {REBUILD}.")


def remove(path: str | Path) -> None:
    """Delete a store: renamed aside first, so a half-deleted store is never opened.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> from pathlib import Path
        >>> store.remove(path)
        >>> Path(path).exists()
        False
    """
    path = Path(path)
    trash = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    path.rename(trash)
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink()


def lost_chunks(path: str | Path) -> dict[str, list[int]]:
    """Variable -> ``sample`` chunk indices marked done whose chunk files are missing or
    truncated (checked from file sizes and Blosc headers, without reading the data).

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.write_region(path, ds, start=0)
        >>> from pathlib import Path
        >>> (Path(path) / "resid_post" / "c" / "0" / "0" / "0").unlink()    # lose samples 0-1, layer 0
        >>> store.lost_chunks(path)                          # variable -> sample-chunk indices
        {'resid_post': [0]}
    """
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="r")
    done = np.asarray(cast(zarr.Array, group[DONE])[:], bool) if DONE in group else None
    data_vars = set(xr.open_zarr(path).data_vars) - {DONE}
    lost: dict[str, list[int]] = {}
    for name, arr in group.arrays():
        # Only data variables: zarr skips writing coordinate chunks equal to the fill value
        # (empty strings, zeros), while activation chunks (fill NaN) are always written.
        if name in data_vars:
            bad = _bad_sample_chunks(path, arr, done)
            if bad:
                lost[name] = bad
    return lost


def _bad_sample_chunks(root: Path, arr, done: np.ndarray | None) -> list[int]:
    """Sample-chunk indices of ``arr`` with a missing or truncated chunk file."""
    import itertools

    chunks, shape = arr.metadata.chunks, arr.shape
    grid = [range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)]
    complete = _length_check(arr)
    bad = set()
    for idx in itertools.product(*grid):
        i = idx[0]
        if i in bad or (done is not None and not done[i * chunks[0]:(i + 1) * chunks[0]].all()):
            continue
        f = root / arr.path / arr.metadata.encode_chunk_key(idx)
        if not f.is_file() or not complete(f, arr, idx):
            bad.add(i)
    return sorted(bad)


def _length_check(arr):
    """A ``(file, arr, chunk index) -> bool`` test that a chunk file is whole.

    Blosc and Zstandard frames record their own length, so a truncated file is found from
    its headers without decompressing; any other codec is checked by decoding the chunk.
    """
    codecs = getattr(arr.metadata, "codecs", None) or [getattr(arr.metadata, "compressor",
                                                               None)]
    last = type(codecs[-1]).__name__
    if last in ("Blosc", "BloscCodec"):
        return lambda f, *_: _blosc_complete(f)
    if last in ("Zstd", "ZstdCodec"):
        return lambda f, *_: _zstd_complete(f)
    return _decodes


def _blosc_complete(f: Path) -> bool:
    """True when a Blosc chunk file is as long as its header says (bytes 12-16: cbytes)."""
    with open(f, "rb") as fh:
        header = fh.read(16)
    return len(header) == 16 and int.from_bytes(header[12:16], "little") == f.stat().st_size


def _zstd_complete(f: Path) -> bool:
    """True when a file holds whole Zstandard frames (walks the block headers, RFC 8878)."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        pos = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(6)
            if len(head) < 5 or head[:4] != b"\x28\xb5\x2f\xfd":
                return False
            desc = head[4]
            fcs = (0, 2, 4, 8)[desc >> 6] or (1 if desc & 0x20 else 0)
            pos += 5 + (0 if desc & 0x20 else 1) + (0, 1, 2, 4)[desc & 3] + fcs
            last = False
            while not last:
                fh.seek(pos)
                block = fh.read(3)
                if len(block) < 3:
                    return False
                bits = int.from_bytes(block, "little")
                last, kind, n = bool(bits & 1), (bits >> 1) & 3, bits >> 3
                pos += 3 + (1 if kind == 1 else n)
            pos += 4 if desc & 4 else 0
    return pos == size


def _decodes(f: Path, arr, idx: tuple[int, ...]) -> bool:
    region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, arr.metadata.chunks,
                                                             strict=True))
    try:
        arr[region]
    except Exception:  # noqa: BLE001 - any decoding failure means a damaged chunk
        return False
    return True


def forget_lost_chunks(path: str | Path) -> list[int]:
    """Mark batches whose chunk files were lost as not done, so extraction recomputes them.

    Example:
        >>> import tempfile, numpy as np, xarray as xr
        >>> from sn_interp import store
        >>> ds = xr.Dataset({"resid_post": (("sample", "layer", "d_model"), np.ones((4, 2, 3), "f4"))},
        ...                 coords={"sample_id": ("sample", list("abcd"))}, attrs={"model_id": "m"})
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> store.create(path, ds, chunk=2)                  # 2 samples per chunk
        True
        >>> store.write_region(path, ds, start=0)
        >>> from pathlib import Path
        >>> (Path(path) / "resid_post" / "c" / "1" / "1" / "0").unlink()    # samples 2-3, layer 1
        >>> store.forget_lost_chunks(path), store.pending(path).tolist()
        ([1], [False, False, True, True])
    """
    lost = lost_chunks(path)
    if not lost:
        return []
    ds = xr.open_zarr(path)
    chunk = ds[DONE].encoding.get("chunks", (ds.sizes["sample"],))[0]
    indices = sorted({i for v in lost.values() for i in v})
    for i in indices:
        start, stop = i * chunk, min((i + 1) * chunk, ds.sizes["sample"])
        xr.Dataset({DONE: ("sample", np.zeros(stop - start, bool))}).to_zarr(
            path, mode="r+", region={"sample": slice(start, stop)})
    log.warning("store %s lost chunk files of %s (sample chunks %s): recomputing them",
                path, sorted(lost), indices)
    return indices


def open_store(path: str | Path, *, complete: bool = True) -> xr.Dataset:
    """Open an activation store lazily (dask-backed), without the bookkeeping variable.

    Args:
        path: The zarr directory.
        complete: Refuse a store that an interrupted extraction left unfinished.

    Example:
        >>> import tempfile
        >>> import sn_interp as sn
        >>> vlm = sn.load_model("tiny-llava")
        >>> probe, _ = sn.load_task("shapes-color", n=30).split(shots=1, seed=0)
        >>> path = tempfile.mkdtemp() + "/acts.zarr"
        >>> _ = sn.extract(vlm, probe, store=path, progress=False)
        >>> acts = sn.open_store(path)                       # lazy, dask-backed
        >>> acts.resid_post.dims
        ('sample', 'layer', 'd_model')
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
    lost = lost_chunks(path)
    if lost:
        raise StoreDamagedError(
            f"the store {path} lost chunk files (deleted or truncated) of {sorted(lost)}, "
            f"sample chunks {sorted({i for v in lost.values() for i in v})}: rerun sn.extract "
            "with the same store and samples to recompute them")
    return ds


def config_of(ds: xr.Dataset) -> dict:
    """The extraction config recorded in a Dataset's ``config`` attribute.

    Example:
        >>> import xarray as xr
        >>> from sn_interp.store import config_of
        >>> config_of(xr.Dataset(attrs={"config": '{"batch_size": 8}'}))
        {'batch_size': 8}
    """
    return json.loads(ds.attrs.get("config", "{}"))
