"""Prompt templates: named question templates that render from class names and row fields.

A template is a ``str.format`` string with these fields:

- ``{options}``: the answer options as ``"A. cat\\nB. dog"``, in ``class_names`` order (or in
  the row's own ``choices`` order, for benchmarks whose options change per question);
- ``{classes}``: the class names as ``"cat, dog or fish"``;
- ``{question}``: the row's own question text (hub and user tasks);
- any other string column of the task's rows (e.g. ``{object}`` in ``shapes-exists``).

Each template carries its ``answer_format``: ``multiple_choice`` templates contain
``{options}`` and end with "Answer with the letter."; ``open`` ones ask for the class name;
``yes_no`` ones say "Answer yes or no." and need two classes: "no" means label 0, "yes"
label 1. :func:`class_answer_strings` gives the answer each class expects in a format (what the
training recipes teach and the zero-shot baseline scores); it lives here, below ``probes``, so
that checkpoint building can use it without importing upward.

Example:
    >>> t = Template("mc", "What digit is this?\\n{options}\\nAnswer with the letter.",
    ...              "multiple_choice")
    >>> print(t.render(("0", "1")))
    What digit is this?
    A. 0
    B. 1
    Answer with the letter.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any  # template fields come from datasets rows and JSON manifests (mixed types)

from sn_interp.sample import ANSWER_FORMATS, AnswerFormat

LETTERS = string.ascii_uppercase


def format_options(options: Sequence[str]) -> str:
    """Lettered options, one per line: ``"A. cat\\nB. dog"``.

    Example:
        >>> format_options(["cat", "dog"])
        'A. cat\\nB. dog'
    """
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options do not fit the letters A-Z")
    return "\n".join(f"{LETTERS[i]}. {name}" for i, name in enumerate(options))


def format_classes(names: Sequence[str]) -> str:
    """Class names as prose: ``"cat, dog or fish"``.

    Example:
        >>> format_classes(["cat", "dog", "fish"])
        'cat, dog or fish'
    """
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class Template:
    """One named prompt template.

    Attributes:
        id: The prompt id (``task.prompts`` key, ``Sample.prompt_id``).
        text: The ``str.format`` template (fields listed in the module docstring).
        answer_format: ``open``, ``multiple_choice`` or ``yes_no``.
        heldout: True for the template kept out of the micro VLMs' training prompts.

    Example:
        >>> import sn_interp as sn
        >>> tpl = sn.load_task("shapes-color", n=20).prompts["mc"]
        >>> tpl.answer_format, "{options}" in tpl.text
        ('multiple_choice', True)
    """

    id: str
    text: str
    answer_format: AnswerFormat = "open"
    heldout: bool = False

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"prompt {self.id!r}: answer_format {self.answer_format!r} "
                             f"is not one of {ANSWER_FORMATS}")
        if self.answer_format == "multiple_choice" and "{options}" not in self.text:
            raise ValueError(f"prompt {self.id!r} is multiple_choice but has no {{options}} "
                             "field; add one so the lettered options are shown")

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names the template uses."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.text) if f)

    def render(self, class_names: Sequence[str], row: Mapping[str, Any] | None = None) -> str:
        """The question text for one row.

        Args:
            class_names: The task's classes, in label order.
            row: The row's string fields (``question``, ``choices``, ``object``, ...).

        Returns:
            The rendered question.

        Example:
            >>> Template("yn", "Is there a {object}? Answer yes or no.", "yes_no").render(
            ...     ("no", "yes"), {"object": "circle"})
            'Is there a circle? Answer yes or no.'
        """
        row = dict(row or {})
        choices = row.pop("choices", None) or list(class_names)
        values = dict(row)
        if "options" in self.fields:
            values["options"] = format_options(choices)
        if "classes" in self.fields:
            values["classes"] = format_classes(class_names)
        try:
            return self.text.format_map(values)
        except KeyError as err:
            raise KeyError(f"prompt {self.id!r} needs the field {err.args[0]!r}, which the "
                           f"task's rows do not have (they have {sorted(values)})") from None


def templates_from_manifest(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Template]:
    """Templates from a manifest table ``{id: {text, format, heldout}}``, in manifest order.

    Example:
        >>> t = templates_from_manifest({"a": {"text": "Which? {options}",
        ...                                    "format": "multiple_choice"}})
        >>> t["a"].answer_format
        'multiple_choice'
    """
    unknown = {k for e in entries.values() for k in e} - {"text", "format", "heldout"}
    if unknown:
        raise ValueError(f"unknown prompt keys {sorted(unknown)}; use text, format, heldout")
    return {pid: Template(pid, e["text"], e.get("format", "open"), bool(e.get("heldout", False)))
            for pid, e in entries.items()}


def yes_no_classes(class_names: Sequence[str]) -> dict[str, int]:
    """Class index of ``"yes"`` and ``"no"``: by name when the classes are yes/no (any case, any
    order), otherwise the binary convention ``no`` -> 0, ``yes`` -> 1.

    Example:
        >>> yes_no_classes(("Yes", "No"))
        {'yes': 0, 'no': 1}
    """
    low = [n.lower().strip() for n in class_names]
    if sorted(low) == ["no", "yes"]:
        return {"yes": low.index("yes"), "no": low.index("no")}
    return {"no": 0, "yes": 1}


def class_answer_strings(class_names: Sequence[str], answer_format: str) -> list[str]:
    """The answer string of each class: its letter, its name, or Yes/No.

    Example:
        >>> class_answer_strings(("t_shirt", "coat"), "multiple_choice")
        ['A', 'B']
        >>> class_answer_strings(("t_shirt", "coat"), "open")
        ['t shirt', 'coat']
    """
    if answer_format == "multiple_choice":
        return [string.ascii_uppercase[c] for c in range(len(class_names))]
    if answer_format == "yes_no":
        inv = {v: k for k, v in yes_no_classes(class_names).items()}
        return [inv[c].capitalize() for c in range(len(class_names))]
    return [n.replace("_", " ") for n in class_names]
