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

Example (in a temporary folder, two images per class):
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> import sn_interp as sn
    >>> root = Path(tempfile.mkdtemp())
    >>> for cls, colour in (("cat", "red"), ("dog", "blue")):
    ...     (root / "imgs" / cls).mkdir(parents=True)
    ...     for i in range(2):
    ...         Image.new("RGB", (16, 16), colour).save(root / "imgs" / cls / f"{i}.png")
    >>> lines = [json.dumps({"image": f"imgs/{c}/{i}.png", "question": "Cat or dog?",
    ...                      "label": c}) for c in ("cat", "dog") for i in range(2)]
    >>> _ = (root / "train.jsonl").write_text("\\n".join(lines))
    >>> sn.load_task(str(root / "train.jsonl"), classes=["cat", "dog"]).class_names
    ('cat', 'dog')
    >>> len(sn.load_task(str(root / "imgs"), question="Which animal is this?"))
    4
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any  # records are parsed JSON objects (values of mixed types)

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


def _label_index(label: object, classes: Sequence[str], where: str, by_index: bool) -> int:
    """The class index of a record's label: a class name, or (``by_index``, i.e. with
    ``classes=`` given) an integer index into ``classes``."""
    if by_index and isinstance(label, int) and 0 <= label < len(classes):
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
        _check_label(record["label"], where)
        records.append((line_no, record))
    if not records:
        raise ValueError(f"{path} is empty: expected one JSON record per line "
                         '({"image": path, "question": text, "label": class})')
    return records


def _check_label(label: object, where: str) -> None:
    """Refuse labels that are neither a class name nor an integer index."""
    if isinstance(label, bool) or label is None or not isinstance(label, str | int):
        shown = json.dumps(label)
        raise ValueError(f"{where}: label {shown} is not a class name (string) or a class "
                         "index (integer); write the class, e.g. \"label\": \"cat\"")


def _derived_classes(records: list[tuple[int, dict[str, Any]]], path: Path) -> list[str]:
    """Sorted distinct labels, refusing the integer 1 and the string "1" side by side."""
    first: dict[str, tuple[int, Any]] = {}
    for line_no, r in records:
        key = str(r["label"])
        if key in first and type(first[key][1]) is not type(r["label"]):
            raise ValueError(
                f"{path}, lines {first[key][0]} and {line_no}: labels mix "
                f"{json.dumps(first[key][1])} and {json.dumps(r['label'])}; write every "
                "label the same way (all class names, or all integers)")
        first.setdefault(key, (line_no, r["label"]))
    labels = {r["label"] for _, r in records}
    return [str(x) for x in sorted(labels, key=lambda x: (isinstance(x, str), x))]


def _check_unique_images(rows: list[dict[str, Any]], lines: list[int], path: Path) -> None:
    seen: dict[str, int] = {}
    for row, line_no in zip(rows, lines, strict=True):
        if row["image_id"] in seen:
            raise ValueError(f"{path}, lines {seen[row['image_id']]} and {line_no}: both use "
                             f"image {row['image_id']!r}; remove the duplicate, or give each "
                             "record its own \"id\"")
        seen[row["image_id"]] = line_no


def load_jsonl(path: str | Path, *, classes: Sequence[str] | None = None,
               question: str | None = None, partition: str = "eval") -> Task:
    """A task from a jsonl file of ``{"image", "question", "label"}`` records.

    Args:
        path: The ``.jsonl`` file; image paths in it are relative to its directory.
        classes: The class list, in label order (default: the sorted distinct labels).
        question: The question for records without one.
        partition: Ignored (user data has no partitions).

    Example:
        >>> task = load_jsonl("data.jsonl", classes=["no", "yes"])  # doctest: +SKIP

    (A runnable example is in the module docstring.)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    records = _parse_jsonl(path)
    by_index = classes is not None
    classes = list(classes) if classes is not None else _derived_classes(records, path)
    rows = []
    for line_no, r in records:
        where = f"{path}, line {line_no}"
        text = r.get("question") or question
        if not text:
            raise ValueError(f"{where}: no question in the record and no question= option")
        image = (path.parent / r["image"]).resolve()
        _check_image(image, where)
        rows.append({"image": str(image),
                     "label": _label_index(r["label"], classes, where, by_index),
                     "image_id": str(r.get("id", r["image"])), "raw_question": str(text)})
    _check_unique_images(rows, [line_no for line_no, _ in records], path)
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
        >>> task = load_folder("pets/", question="Which animal is this?")  # doctest: +SKIP

    (A runnable example is in the module docstring.)
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
