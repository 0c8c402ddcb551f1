"""Reading a benchmark's rows: from the HuggingFace Hub, or from a local copy in the hub schema.

A local copy is a directory saved with ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``,
a ``.parquet`` / ``.jsonl`` / ``.json`` / ``.csv`` file, or a directory in the hub repo's
layout (read with ``load_dataset(dir)``). Image columns may hold images or file paths;
relative paths resolve against the file's directory.

Example:
    >>> rows = read_rows("lmms-lab/POPE", None, "test", path="pope.jsonl", image_columns=("image",))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any  # an undecoded datasets image cell (dict, path or PIL) is untyped

import datasets
from PIL import Image

log = logging.getLogger(__name__)

_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class HubUnavailableError(RuntimeError):
    """The benchmark could not be loaded from the Hub (offline, no network, or gated).

    Example:
        >>> from sn_interp.tasks import HubUnavailableError
        >>> issubclass(HubUnavailableError, RuntimeError)
        True
    """


def _from_disk(path: Path, split: str) -> datasets.Dataset:
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split in data:
            return data[split]
        if len(data) == 1:
            return next(iter(data.values()))
        raise KeyError(f"{path} has splits {list(data)}, not {split!r}; pass split=")
    return data


def _read_local(path: Path, split: str, data_dir: str | None) -> datasets.Dataset:
    if not path.exists():
        raise FileNotFoundError(f"local copy {path} does not exist")
    if path.is_dir() and any((path / f).is_file() for f in
                             ("dataset_info.json", "state.json", "dataset_dict.json")):
        return _from_disk(path, split)
    if path.is_file():
        if path.suffix not in _BUILDERS:
            raise ValueError(f"cannot read {path}: use a .parquet, .jsonl, .json or .csv file, "
                             "or a directory saved with Dataset.save_to_disk")
        return datasets.load_dataset(_BUILDERS[path.suffix], data_files=str(path), split="train")
    return datasets.load_dataset(str(path), data_dir=data_dir, split=split)


def _resolve_images(data: datasets.Dataset, columns: Sequence[str], base: Path,
                    source: Path | str) -> datasets.Dataset:
    """Image columns as undecoded ``Image`` features; path strings checked and made absolute."""
    for col in columns:
        if col not in data.column_names:
            continue
        if isinstance(data.features[col], datasets.Value):  # file paths
            paths = list(data[col])
            for line, p in enumerate(paths, start=1):
                if p is not None and not (base / p).is_file():
                    raise FileNotFoundError(f"{source}, row {line}: image {p!r} (column {col!r}) "
                                            f"not found under {base}")
            absolute = [None if p is None else str(base / p) for p in paths]
            data = data.remove_columns(col).add_column(col, absolute)
        data = data.cast_column(col, datasets.Image(decode=False))
    return data


def read_rows(hub_id: str | None, config: str | None, split: str, *,
              path: str | Path | None = None, data_dir: str | None = None,
              image_columns: Sequence[str] = ("image",), task: str = "") -> datasets.Dataset:
    """The benchmark's raw rows with undecoded image columns.

    Args:
        hub_id: Hub dataset id (None: the benchmark has no hub copy; ``path`` is required).
        config: Hub config name, or None.
        split: Split to read.
        path: A local copy (see the module docstring); skips the Hub.
        data_dir: Passed to ``load_dataset`` (a sub-directory of the hub repo or local dir).
        image_columns: Columns holding images or image paths.
        task: Task name, for messages.

    Raises:
        HubUnavailableError: No local copy and the Hub cannot be reached.
    """
    if path is not None:
        path = Path(path).expanduser()
        data = _read_local(path, split, data_dir)
        base = path.parent if path.is_file() else path
        return _resolve_images(data, image_columns, base, path)
    how = (f"point it at a local copy in the hub schema: load_task({task!r}, path=...) with a "
           "directory saved by Dataset.save_to_disk, a parquet/jsonl file, or a snapshot of the "
           "hub repo (schema: see sn_interp.tasks.hub)")
    if hub_id is None:
        raise HubUnavailableError(f"task {task!r} has no copy on the Hugging Face Hub; {how}")
    try:
        data = datasets.load_dataset(hub_id, config, split=split, data_dir=data_dir)
    except Exception as err:  # offline, no network, gated, renamed: one clear message
        raise HubUnavailableError(
            f"could not load {hub_id!r} (config {config!r}, split {split!r}) from the Hugging "
            f"Face Hub: the hub is unreachable or the dataset unavailable "
            f"({type(err).__name__}: {str(err)[:200]}). Go online (unset HF_HUB_OFFLINE / "
            f"HF_DATASETS_OFFLINE) or {how}") from err
    return _resolve_images(data, image_columns, Path("."), hub_id)


def open_image(value: Any) -> Image.Image | None:
    """A PIL image from an undecoded image cell (``{"bytes", "path"}``), a path, or None."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        value = value.get("path")
    return Image.open(value)


def side_by_side(images: Sequence[Image.Image], height: int = 384) -> Image.Image:
    """Images scaled to one height and pasted left to right, with a white gap."""
    scaled = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height))
              for im in images]
    gap = height // 32
    out = Image.new("RGB", (sum(im.width for im in scaled) + gap * (len(scaled) - 1), height),
                    (255, 255, 255))
    x = 0
    for im in scaled:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def encode_png(image: Image.Image) -> dict[str, Any]:
    """An undecoded image cell holding ``image`` as PNG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}
