"""The input record: one image, one question, optionally its label.

Example:
    >>> from PIL import Image
    >>> from sn_interp import Sample
    >>> s = Sample(Image.new("RGB", (32, 32)), "What colour is the square?", label=0,
    ...            class_names=("red", "blue"))
    >>> s.label_name
    'red'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from jaxtyping import Shaped
from PIL import Image

from sn_interp.names import SAMPLE_COORDS

AnswerFormat = Literal["open", "multiple_choice", "yes_no"]
ANSWER_FORMATS = ("open", "multiple_choice", "yes_no")


@dataclass(frozen=True)
class Sample:
    """One categorical VQA example.

    Attributes:
        image: The image (any PIL mode; converted to RGB when encoded).
        question: The fully rendered question text the model sees.
        label: Class index into ``class_names``, or None when unknown.
        sample_id: Stable id; defaults to ``image_id`` or to the position in the batch.
        label_name: Class name of ``label``; filled from ``class_names`` when omitted.
        task: Name of the task the sample comes from.
        prompt_id: Id of the prompt template that rendered ``question``.
        image_id: Id of the image (several prompts may share one image).
        split: ``probe``, ``test``, ``train`` or empty.
        class_names: The task's class list, in label order.
        answer_format: How the model is asked to answer: ``open`` (class names),
            ``multiple_choice`` (letters A, B, ... in ``class_names`` order) or ``yes_no``.

    Example:
        >>> from PIL import Image
        >>> s = Sample(Image.new("RGB", (8, 8)), "Is it red? Answer yes or no.", label=1,
        ...            class_names=("no", "yes"), answer_format="yes_no", sample_id="x0")
        >>> s.label_name
        'yes'
    """

    image: Image.Image
    question: str
    label: int | None = None
    sample_id: str | None = None
    label_name: str | None = None
    task: str = ""
    prompt_id: str = ""
    image_id: str = ""
    split: str = ""
    class_names: tuple[str, ...] = field(default=())
    answer_format: AnswerFormat = "open"

    def __post_init__(self) -> None:
        if not isinstance(self.image, Image.Image):
            raise TypeError(f"Sample.image must be a PIL image, got {type(self.image).__name__};"
                            " open files with PIL.Image.open(path)")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("Sample.question must be a non-empty string")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format {self.answer_format!r} is not one of {ANSWER_FORMATS}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.label is not None:
            label = int(self.label)
            object.__setattr__(self, "label", label)
            if self.class_names:
                if not 0 <= label < len(self.class_names):
                    raise ValueError(f"label {label} is outside the class list "
                                     f"{list(self.class_names)} (sample {self.sample_id!r})")
                if self.label_name is None:
                    object.__setattr__(self, "label_name", self.class_names[label])

    def replace(self, **changes: object) -> Sample:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)


def sample_ids(samples: Sequence[Sample]) -> list[str]:
    """Each sample's id: ``sample_id``, else ``image_id``, else a hash of its content.

    Content ids (``sha256-<16 hex>`` of image, question and label; identical samples get
    ``-2``, ``-3``, ... in order) never depend on a sample's position, so two different
    id-less lists never share ids (or a store).

    Example:
        >>> from PIL import Image
        >>> img = Image.new("RGB", (8, 8))
        >>> sample_ids([Sample(img, "q?", sample_id="a"), Sample(img, "q?", image_id="b")])
        ['a', 'b']
    """
    from sn_interp.fingerprint import sample_id_from_content

    out, seen = [], {}
    for s in samples:
        sid = s.sample_id or s.image_id
        if not sid:
            sid = sample_id_from_content(s)
            seen[sid] = seen.get(sid, 0) + 1
            sid = sid if seen[sid] == 1 else f"{sid}-{seen[sid]}"
        out.append(sid)
    return out


def sample_coords(samples: Sequence[Sample]) -> dict[str, tuple[str, Shaped[np.ndarray, " sample"]]]:
    """The ``sample`` coordinates of a list of samples: the one builder of them.

    ``label`` is int64 (-1 when unknown), the others strings ("" when unset); activations
    (:func:`sn_interp.extract`), zero-shot answers and early-exit predictions all carry them.

    Example:
        >>> from PIL import Image
        >>> c = sample_coords([Sample(Image.new("RGB", (8, 8)), "q?", label=1, sample_id="x",
        ...                           class_names=("a", "b"))])
        >>> c["sample_id"][1].tolist(), c["label"][1].tolist(), c["label_name"][1].tolist()
        (['x'], [1], ['b'])
    """
    col: dict[str, list] = {
        "sample_id": sample_ids(samples),
        "label": [-1 if s.label is None else s.label for s in samples],
        **{f: [getattr(s, f) or "" for s in samples] for f in SAMPLE_COORDS[2:]}}
    return {k: ("sample", np.asarray(v, dtype=np.int64 if k == "label" else str))
            for k, v in col.items()}
