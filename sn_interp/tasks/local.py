"""The user's own data: a ``.jsonl`` file of records, or an image folder with one sub-folder per class.

- jsonl (the SAV repository's format): one record per line,
  ``{"image": "imgs/0.png", "question": "Is it a cat?", "label": "cat"}``; image paths are
  relative to the file; ``label`` is a class name (or an index into ``classes=``); a record
  without ``question`` uses the ``question=`` option.
- folder: ``root/<class>/<image>``; classes are the sub-folder names (sorted) unless
  ``classes=`` orders or selects them; every image gets the ``question=`` text.

Templates: ``raw`` (the question as given; default), ``open`` (adds "Answer with the class
name.") and, up to 26 classes, ``mc`` (lettered options). User data has no partitions: the
``partition`` argument is accepted and ignored.

Example:
    >>> import sn_interp as sn
    >>> task = sn.load_task("my_data/train.jsonl", classes=["cat", "dog"])
    >>> task = sn.load_task("my_images/", question="Which animal is this?")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from PIL import Image, UnidentifiedImageError

from sn_interp.tasks.base import Task
from sn_interp.tasks.prompts import LETTERS, Template

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _templates(n_classes: int) -> dict[str, Template]:
    out = {"raw": Template("raw", "{question}", "open"),
           "open": Template("open", "{question} Answer with the class name.", "open")}
    if n_classes <= len(LETTERS):
        out["mc"] = Template("mc", "{question}\n{options}\nAnswer with the letter.",
                             "multiple_choice")
    return out


def _check_image(path: Path, where: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{where}: image {str(path)!r} is unreadable ({err})") from None


def _build(name: str, rows: list[dict[str, Any]], classes: Sequence[str]) -> Task:
    features = datasets.Features({"image": datasets.Image(), "label":
                                  datasets.ClassLabel(names=list(classes)),
                                  "image_id": datasets.Value("string"),
                                  "raw_question": datasets.Value("string")})
    columns = {k: [r[k] for r in rows] for k in features}
    data = datasets.Dataset.from_dict(columns, features=features)
    return Task(name, data, prompts=_templates(len(classes)), description=f"user data {name}")


def _label_index(label: Any, classes: Sequence[str], where: str) -> int:
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(classes):
        return label
    if str(label) in classes:
        return list(classes).index(str(label))
    raise ValueError(f"{where}: label {label!r} is outside the class list {list(classes)}; "
                     "fix the record or pass classes= with every label")


def _parse_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object with image, question, label")
        missing = [k for k in ("image", "label") if k not in record]
        if missing:
            raise ValueError(f"{where}: record lacks {missing}")
        records.append((line_no, record))
    if not records:
        raise ValueError(f"{path} is empty: expected one JSON record per line "
                         '({"image": path, "question": text, "label": class})')
    return records


def load_jsonl(path: str | Path, *, classes: Sequence[str] | None = None,
               question: str | None = None, partition: str = "eval") -> Task:
    """A task from a jsonl file of ``{"image", "question", "label"}`` records.

    Args:
        path: The ``.jsonl`` file; image paths in it are relative to its directory.
        classes: The class list, in label order (default: the sorted distinct labels).
        question: The question for records without one.
        partition: Ignored (user data has no partitions).

    Example:
        >>> task = load_jsonl("data.jsonl", classes=["no", "yes"])
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    records = _parse_jsonl(path)
    if classes is None:
        labels = {r["label"] for _, r in records}
        classes = [str(x) for x in sorted(labels, key=lambda x: (isinstance(x, str), x))]
    rows = []
    for line_no, r in records:
        where = f"{path}, line {line_no}"
        text = r.get("question") or question
        if not text:
            raise ValueError(f"{where}: no question in the record and no question= option")
        image = (path.parent / r["image"]).resolve()
        _check_image(image, where)
        rows.append({"image": str(image), "label": _label_index(r["label"], classes, where),
                     "image_id": str(r.get("id", r["image"])), "raw_question": str(text)})
    return _build(path.stem, rows, classes)


def load_folder(path: str | Path, *, question: str | None = None,
                classes: Sequence[str] | None = None, partition: str = "eval") -> Task:
    """A task from an image folder with one sub-folder per class.

    Args:
        path: The root folder.
        question: The question asked of every image (required).
        classes: Sub-folders to use, in label order (default: all, sorted).
        partition: Ignored (user data has no partitions).

    Example:
        >>> task = load_folder("pets/", question="Which animal is this?")
    """
    root = Path(path).expanduser()
    if not question:
        raise ValueError(f"image folder {root}: pass question= (the text asked of every image)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = list(classes) if classes is not None else found
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders (root/<class>/<image>)")
    rows = []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {root}: no sub-folder for class {cls!r}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"image folder {folder} holds no images ({sorted(IMAGE_SUFFIXES)})")
        for f in files:
            _check_image(f, str(folder))
            rows.append({"image": str(f.resolve()), "label": label,
                         "image_id": f"{cls}/{f.name}", "raw_question": question})
    return _build(root.name, rows, classes)
