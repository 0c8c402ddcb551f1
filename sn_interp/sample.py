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

from dataclasses import dataclass, field, replace
from typing import Literal

from PIL import Image

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
