"""Adapters from the papers' hub benchmarks to Tasks.

Each adapter names the hub dataset it assumes and the columns it reads (from the datasets'
cards and loader code); ``convert`` maps a batch of raw rows to task rows (``image``,
``label`` as class index or name, ``image_id``, ``raw_question``, optional per-row
``choices``). Class lists and prompt templates live in ``data/tasks/hub.toml``.

Every adapter's loader takes ``partition`` (``eval``/``all`` -> the adapter's evaluation
split, ``train`` -> its training split), ``split=`` (a hub split name, overrides partition),
``path=`` (a local copy in the hub schema, see ``hub_io``) and ``data_dir=``. ``image_id``
is the benchmark's item id (unique per question; an image asked several questions appears
under several ids).

Example:
    >>> import sn_interp as sn
    >>> task = sn.load_task("pope", path="/data/pope_test.parquet", category="adversarial")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any  # datasets types row values and image cells as Any

import datasets
import numpy as np
from PIL import Image

from sn_interp.tasks.base import Task
from sn_interp.tasks.hub_io import (
    HubUnavailableError,
    encode_png,
    open_image,
    read_rows,
    side_by_side,
)
from sn_interp.tasks.manifest import manifest
from sn_interp.tasks.prompts import LETTERS, templates_from_manifest

log = logging.getLogger(__name__)
Batch = dict[str, list[Any]]

__all__ = ["ADAPTERS", "HubAdapter", "HubUnavailableError"]


def _ids(batch: Batch, key: str, indices: list[int]) -> list[str]:
    values = batch.get(key)
    return [str(v) for v in values] if values else [str(i) for i in indices]


# ---- converters: (batch, indices, **options) -> task rows -------------------------------
def _pope(b: Batch, idx: list[int], category: str | None = None) -> Batch:
    keep = [i for i, c in enumerate(b.get("category") or [None] * len(idx))
            if category is None or c == category]
    return {"image": [b["image"][i] for i in keep], "label": [b["answer"][i] for i in keep],
            "image_id": [_ids(b, "question_id", idx)[i] for i in keep],
            "raw_question": [b["question"][i] for i in keep]}


def _aokvqa(b: Batch, idx: list[int]) -> Batch:
    return {"image": b["image"], "label": b["correct_choice_idx"],
            "image_id": _ids(b, "question_id", idx), "raw_question": b["question"],
            "choices": b["choices"]}


def _vizwiz(b: Batch, idx: list[int]) -> Batch:
    if "answerable" in b:
        labels = [int(a) for a in b["answerable"]]
    else:
        labels = [int(c != "unanswerable") for c in b["category"]]
    return {"image": b["image"], "label": labels, "image_id": _ids(b, "question_id", idx),
            "raw_question": b["question"]}


def _clevr(b: Batch, idx: list[int], family: str = "shape") -> Batch:
    classes = manifest("hub")["clevr"]["families"][family]
    keep = [i for i, a in enumerate(b["answer"]) if str(a).strip().lower() in classes]
    ids = _ids(b, "question_index" if "question_index" in b else "id", idx)
    return {"image": [b["image"][i] for i in keep],
            "label": [str(b["answer"][i]).strip().lower() for i in keep],
            "image_id": [ids[i] for i in keep], "raw_question": [b["question"][i] for i in keep]}


def _scienceqa(b: Batch, idx: list[int]) -> Batch:
    keep = [i for i, im in enumerate(b["image"]) if im is not None]
    hints = b.get("hint") or [""] * len(idx)
    question = [f"Context: {hints[i]}\n{b['question'][i]}" if hints[i] else b["question"][i]
                for i in keep]
    return {"image": [b["image"][i] for i in keep], "label": [b["answer"][i] for i in keep],
            "image_id": [str(idx[i]) for i in keep], "raw_question": question,
            "choices": [b["choices"][i] for i in keep]}


def _instaorder(b: Batch, idx: list[int]) -> Batch:
    choices = b.get("choices") or [["the object marked A", "the object marked B"]] * len(idx)
    return {"image": b["image"], "label": [str(a).strip() for a in b["answer"]],
            "image_id": _ids(b, "id", idx), "raw_question": b["question"], "choices": choices}


def _image_label(b: Batch, idx: list[int]) -> Batch:
    id_key = "image_id" if "image_id" in b else "filename"
    return {"image": b["image"], "label": b["label"], "image_id": _ids(b, id_key, idx)}


def _mhalubench(b: Batch, idx: list[int]) -> Batch:
    images = b["image"] if "image" in b else b["image_path"]
    return {"image": images, "label": b["claim_label"], "image_id": _ids(b, "id", idx),
            "raw_question": b["claim"]}


def _vlguard(b: Batch, idx: list[int]) -> Batch:
    out: Batch = {"image": [], "label": [], "image_id": [], "raw_question": []}
    for i, (safe, pairs) in enumerate(zip(b["safe"], b["instr-resp"], strict=False)):
        for j, pair in enumerate(pairs):
            key = next(k for k in pair if k.endswith("instruction"))
            label = {"safe_instruction": "safe", "unsafe_instruction": "unsafe"}.get(
                key, "safe" if safe else "unsafe")
            out["image"].append(b["image"][i])
            out["label"].append(label)
            out["image_id"].append(f"{_ids(b, 'id', idx)[i]}-{j}")
            out["raw_question"].append(pair[key])
    return out


def _blink(b: Batch, idx: list[int]) -> Batch:
    images = []
    for i in range(len(idx)):
        cells = [b[c][i] for c in ("image_1", "image_2", "image_3", "image_4")
                 if c in b and b[c][i] is not None]
        if len(cells) == 1:
            images.append(cells[0])
        else:
            images.append(encode_png(side_by_side([_opened(c) for c in cells])))
    labels = [re.sub(r"[()\s]", "", str(a)) for a in b["answer"]]
    return {"image": images, "label": labels, "image_id": _ids(b, "idx", idx),
            "raw_question": b["question"], "choices": b["choices"]}


def _naturalbench(b: Batch, idx: list[int]) -> Batch:
    out: Batch = {"image": [], "label": [], "image_id": [], "raw_question": []}
    ids = _ids(b, "Index", idx)
    for i in range(len(idx)):
        if b.get("Question_Type") and b["Question_Type"][i] != "yes_no":
            continue
        for im in (0, 1):
            for q in (0, 1):
                out["image"].append(b[f"Image_{im}"][i])
                out["label"].append(str(b[f"Image_{im}_Question_{q}"][i]).strip().lower())
                out["image_id"].append(f"{ids[i]}-i{im}-q{q}")
                out["raw_question"].append(b[f"Question_{q}"][i])
    return out


# ---- adapters -----------------------------------------------------------------------------
def _norm(name: object) -> str:
    return re.sub(r"[_\s]+", " ", str(name).strip().lower())


@dataclass(frozen=True)
class HubAdapter:
    """How one hub benchmark becomes a Task.

    Attributes:
        name: Registry name (also the ``data/tasks/hub.toml`` table, unless ``manifest_key``).
        hub_id: Hub dataset id, or None when the benchmark has no hub copy.
        convert: ``convert(batch, indices, **options) -> rows`` (see the module docstring).
        description: One line, including the assumed schema.
        config: Hub config name.
        splits: Partition -> hub split (``eval``, optionally ``train``).
        image_columns: Raw columns holding images or image paths.
        options: Adapter options and their defaults (e.g. POPE's ``category``).
        manifest_key: The ``hub.toml`` table, when not ``name``.
    """

    name: str
    hub_id: str | None
    convert: Callable[..., Batch]
    description: str
    config: str | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: {"eval": "test"})
    image_columns: tuple[str, ...] = ("image",)
    options: Mapping[str, Any] = field(default_factory=dict)
    manifest_key: str | None = None

    def classes(self, **options: Any) -> list[str]:
        """The class list (CLEVR's depends on ``family``; letter-class tasks: A-Z)."""
        spec = manifest("hub")[self.manifest_key or self.name]
        if "families" in spec:
            family = options.get("family", self.options.get("family"))
            if family not in spec["families"]:
                raise ValueError(f"{self.name}: unknown family {family!r}; known: "
                                 f"{list(spec['families'])}")
            return spec["families"][family]
        return list(LETTERS) if spec.get("letter_classes") else spec["classes"]

    def load(self, partition: str = "eval", *, path: str | Path | None = None,
             data_dir: str | None = None, split: str | None = None, **options: Any) -> Task:
        """The benchmark as a Task (see the module docstring for the arguments).

        Example:
            >>> ADAPTERS["eurosat"].load(path="eurosat_test.parquet")  # doctest: +SKIP
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"task {self.name!r} has no option(s) {unknown}; its options are "
                            f"{['path', 'data_dir', 'split', *self.options]}")
        opts = {**self.options, **options}
        if split is None:
            key = "eval" if partition == "all" else partition
            if key not in self.splits:
                raise ValueError(f"task {self.name!r} has no {partition!r} partition; it maps "
                                 f"{dict(self.splits)}; pass split= to pick a hub split")
            split = self.splits[key]
        raw = read_rows(self.hub_id, self.config, split, path=path, data_dir=data_dir,
                        image_columns=self.image_columns, task=self.name)
        return self._to_task(raw, opts)

    def _to_task(self, raw: datasets.Dataset, opts: Mapping[str, Any]) -> Task:
        spec = manifest("hub")[self.manifest_key or self.name]
        classes = self.classes(**opts)  # checks the options before any work
        try:
            rows = raw.map(self.convert, batched=True, with_indices=True, keep_in_memory=True,
                           remove_columns=raw.column_names, fn_kwargs=dict(opts), desc=self.name)
        except KeyError as err:
            raise KeyError(f"task {self.name!r}: the rows lack the column {err}; they have "
                           f"{raw.column_names}. Expected schema: {self.description}") from None
        if len(rows) == 0:
            raise ValueError(f"task {self.name!r}: no rows left after conversion "
                             f"(options {dict(opts)}); check the options and the data")
        if spec.get("letter_classes"):  # options per question: letters up to the most options
            classes = list(LETTERS[: max(len(c) for c in rows["choices"])])
        labels = [self._label_index(v, classes, i) for i, v in enumerate(rows["label"])]
        rows = rows.remove_columns("label").add_column("label", labels)
        rows = rows.cast_column("label", datasets.ClassLabel(names=list(classes)))
        rows = rows.cast_column("image", datasets.Image())
        suffix = "".join(f", {k}={v}" for k, v in opts.items() if v is not None)
        return Task(self.name, rows, prompts=templates_from_manifest(spec["prompts"]),
                    description=f"{self.description}{suffix}")

    def _label_index(self, value: object, classes: list[str], row: int) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if 0 <= value < len(classes):
                return int(value)
        else:
            wanted = _norm(value)
            for i, name in enumerate(classes):
                if wanted in (_norm(name), _norm(name).replace(" ", "")):
                    return i
        raise ValueError(f"task {self.name!r}, row {row + 1}: label {value!r} is outside the "
                         f"class list {classes}")


BLINK_SUBTASKS = ("Art_Style", "Counting", "Forensic_Detection", "Functional_Correspondence",
                  "IQ_Test", "Jigsaw", "Multi-view_Reasoning", "Object_Localization",
                  "Relative_Depth", "Relative_Reflectance", "Semantic_Correspondence",
                  "Spatial_Relation", "Visual_Correspondence", "Visual_Similarity")


def _adapters() -> dict[str, HubAdapter]:
    a = [
        HubAdapter("pope", "lmms-lab/POPE", _pope, "POPE object hallucination (lmms-lab/POPE "
                   "test: question, answer yes/no, image, category, question_id)",
                   options={"category": None}),
        HubAdapter("aokvqa", "HuggingFaceM4/A-OKVQA", _aokvqa, "A-OKVQA multiple choice "
                   "(image, question, choices[4], correct_choice_idx, question_id)",
                   splits={"eval": "validation", "train": "train"}),
        HubAdapter("vizwiz", "lmms-lab/VizWiz-VQA", _vizwiz, "VizWiz answerable vs "
                   "unanswerable (image, question, question_id, category or answerable)",
                   splits={"eval": "val"}),
        HubAdapter("clevr", "HuggingFaceM4/clevr", _clevr, "CLEVR, one question family "
                   "(image, question, answer; rows with answers outside the family dropped)",
                   splits={"eval": "validation", "train": "train"},
                   options={"family": "shape"}),
        HubAdapter("scienceqa", "derek-thomas/ScienceQA", _scienceqa, "ScienceQA image "
                   "questions (image or None, question, hint, choices, answer index)",
                   splits={"eval": "test", "train": "train"}),
        HubAdapter("instaorder-depth", None, _instaorder, "InstaOrder depth order, no hub "
                   "copy (image with objects marked A and B, question, answer A|B, id)"),
        HubAdapter("instaorder-occlusion", None, _instaorder, "InstaOrder occlusion order, no "
                   "hub copy (image with objects marked A and B, question, answer A|B, id)"),
        HubAdapter("eurosat", "blanchon/EuroSAT_RGB", _image_label, "EuroSAT RGB land cover "
                   "(image, label ClassLabel[10], filename)",
                   splits={"eval": "test", "train": "train"}),
        HubAdapter("oxford-pets", "timm/oxford-iiit-pet", _image_label, "Oxford-IIIT Pets, 37 "
                   "breeds (image, label ClassLabel[37], image_id)",
                   splits={"eval": "test", "train": "train"}),
        HubAdapter("mhalubench", "openkg/MHaluBench", _mhalubench, "MHaluBench claims (image "
                   "or image_path, claim, claim_label hallucination|non-hallucination, id)",
                   splits={"eval": "train"}, image_columns=("image", "image_path")),
        HubAdapter("vlguard", "ys-zong/VLGuard", _vlguard, "VLGuard safe vs unsafe requests "
                   "(id, image path, safe, instr-resp [{safe_instruction|unsafe_instruction|"
                   "instruction, response}])", splits={"eval": "test", "train": "train"}),
        HubAdapter("naturalbench", "BaiqiL/NaturalBench", _naturalbench, "NaturalBench yes/no "
                   "pairs, 4 samples per row (Index, Image_0/1, Question_0/1, "
                   "Image_i_Question_j, Question_Type)", splits={"eval": "train"},
                   image_columns=("Image_0", "Image_1")),
    ]
    for sub in BLINK_SUBTASKS:
        name = "blink-" + sub.lower().replace("_", "-")
        a.append(HubAdapter(name, "BLINK-Benchmark/BLINK", _blink, f"BLINK {sub} (idx, "
                            "question, image_1..image_4 side by side, choices, answer '(A)')",
                            config=sub, splits={"eval": "val"}, manifest_key="blink",
                            image_columns=("image_1", "image_2", "image_3", "image_4")))
    return {x.name: x for x in a}


ADAPTERS: dict[str, HubAdapter] = _adapters()


def _opened(value: Any) -> Image.Image:
    """An image cell known to be present (cells that are None were left out above)."""
    image = open_image(value)
    if image is None:
        raise ValueError("an image cell is empty")
    return image
