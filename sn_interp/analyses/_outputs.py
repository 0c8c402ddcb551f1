"""Output folders that are never replaced silently, with files written atomically.

Every file an analysis writes (``config.json``, ``result.nc``, tables, figures) is written to
a temporary sibling and renamed into place, so an interrupted run never leaves a half file.
A folder belongs to one config: running another config into it is refused unless
``--overwrite``, which first removes the outputs the previous config listed, so a folder never
mixes the figures or tables of two configs.

Example:
    >>> from pathlib import Path
    >>> atomic_write(Path("/tmp/_out_example.txt"), lambda tmp: tmp.write_text("done"))
    PosixPath('/tmp/_out_example.txt')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any  # Any: values of the JSON records written here

import xarray as xr

log = logging.getLogger(__name__)

CONFIG_FILE, RESULT_FILE, OUTPUTS_FILE = "config.json", "result.nc", "figures.json"
#: An output directory an analysis writes (``extras``) carries this file, naming its config.
STAMP_FILE = "analysis.json"


class OutputConflictError(ValueError):
    """An output folder holds another config's results, or an unreadable result."""


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path`` (same suffix), then rename it.

    The temporary file is removed when ``write`` fails, so nothing half-written remains.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _record(folder: Path) -> dict[str, Any] | None:
    """The ``config.json`` of a folder (None if absent; ``{}`` if unreadable)."""
    path = folder / CONFIG_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def claim(folder: Path, analysis: str, digest: str, overwrite: bool) -> None:
    """Make ``folder`` this config's, refusing one that holds another config's outputs.

    With ``overwrite`` the previous config's listed outputs are removed first.
    """
    record = _record(folder)
    if record is None or (record.get("analysis") == analysis
                          and record.get("digest") == digest):
        return
    if record:
        owner = f"the results of another {record.get('analysis', '?')} config " \
                f"(digest {str(record.get('digest'))[:12]}, study {record.get('study')!r})"
    else:
        owner = f"an unreadable {CONFIG_FILE}"
    if not overwrite:
        raise OutputConflictError(
            f"{folder} holds {owner}: pass --overwrite to replace them, or choose another "
            "--out (nothing was written)")
    removed = remove_outputs(folder)
    log.info("overwrite: removed %d outputs of the previous config in %s", removed, folder)


def remove_outputs(folder: Path) -> int:
    """Delete the result, tables and figures a previous run listed, and the output
    directories it stamped with ``analysis.json``; return how many."""
    listed = listed_outputs(folder)
    files = [folder / RESULT_FILE, folder / OUTPUTS_FILE]
    files += [folder / f"{n}.{e}" for n in listed["tables"] for e in ("csv", "md")]
    files += [folder / f"{n}.{e}" for n in listed["figures"] for e in ("png", "pdf")]
    count = 0
    for f in files:
        if f.is_file():
            f.unlink()
            count += 1
    for stamped in folder.glob(f"*/{STAMP_FILE}"):  # e.g. saved classifiers of that config
        shutil.rmtree(stamped.parent)
        count += 1
    return count


def listed_outputs(folder: Path) -> dict[str, list[str]]:
    """Table and figure names recorded in ``figures.json`` (empty lists when absent)."""
    path = Path(folder) / OUTPUTS_FILE
    try:
        record = json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = {}
    record = record if isinstance(record, dict) else {}
    return {key: [str(n) for n in record.get(key, []) if isinstance(n, str)]
            for key in ("tables", "figures")}


def inputs_digest(models: tuple[str, ...], tasks: tuple[str, ...]) -> str:
    """A hash of the content of a config's inputs: model files and the user's data files.

    Models by their revision (content hash of a local checkpoint's files, commit of a hub
    snapshot); tasks given as a ``.jsonl`` file (with the images it names) or an image folder
    by the bytes of those files; registry tasks, built by code, by their name. File hashes are cached, so a reuse check reads no unchanged file.
    """
    from sn_interp.fingerprint import file_sha256
    from sn_interp.models import _hub_revision, _local_revision, resolve

    record: dict[str, Any] = {"models": {}, "tasks": {}}
    for name in models:
        source, local = resolve(name)
        record["models"][name] = _local_revision(Path(source)) if local else \
            _hub_revision(str(source), None)
    for name in tasks:
        path = Path(name).expanduser()
        files = _task_files(path)
        record["tasks"][name] = "registry" if files is None else \
            {str(f): file_sha256(f) for f in files if f.is_file()}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _task_files(path: Path) -> list[Path] | None:
    """The files a user task reads: a jsonl and the images its records name, or every file
    of an image folder; None for a registry task."""
    if path.is_dir():
        return sorted(f for f in path.rglob("*")
                      if not any(p.startswith(".") for p in f.relative_to(path).parts))
    if not path.is_file():
        return None
    files = [path]
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            image = json.loads(line).get("image")
        except (json.JSONDecodeError, AttributeError):
            continue  # the loader names bad lines
        if isinstance(image, str):
            files.append(path.parent / image)
    return files


def read_result(path: Path, digest: str, inputs: str | None = None) -> xr.Dataset | None:
    """A finished ``result.nc`` of this config and inputs, or None when there is none to reuse.

    A result whose recorded ``inputs_digest`` differs from ``inputs`` (edited data, re-saved
    weights) is not reused: the run recomputes it, and the stores it reads refuse the old
    activations naming what changed.

    Raises:
        OutputConflictError: the file is unreadable (truncated, edited) or was computed with
            another config; the message says ``--overwrite`` recomputes it.
    """
    if not path.exists():
        return None
    try:
        with xr.open_dataset(path) as ds:
            found = ds.attrs.get("config_digest")
            result = ds.load() if found == digest else None
    except Exception as err:  # noqa: BLE001 - netCDF/HDF5 raise many types on damage
        raise OutputConflictError(f"{path} is unreadable ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''}): pass "
                                  "--overwrite to recompute it") from None
    if result is None:
        raise OutputConflictError(f"{path} was computed with another config (digest "
                                  f"{str(found)[:12]}): pass --overwrite to recompute it")
    if inputs is not None and result.attrs.get("inputs_digest") != inputs:
        log.warning("%s was computed from other input data or model files; recomputing it",
                    path)
        return None
    return result
