"""``Task``: a categorical VQA task over a HuggingFace ``datasets.Dataset``.

A task's rows are images with a ``ClassLabel`` ``label`` and a stable ``image_id``; its
questions come from the current prompt template (``with_prompt``), its pixels from the
current image-distribution shift (``shifted``). Both are applied on the fly, so switching
prompt or shift never changes which images a task or a split holds.

Example:
    >>> import sn_interp as sn
    >>> task = sn.load_task("digits", n=100)
    >>> probe, test = task.split(shots=5, seed=0)
    >>> len(probe), probe[0].split
    (50, 'probe')
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast, overload

# Any: a row of a `datasets.Dataset` (datasets types its values as Any) and the task
# manifest's JSON shift parameters.
import datasets
import numpy as np
from jaxtyping import Int
from PIL import Image

from sn_interp.sample import AnswerFormat, Sample
from sn_interp.tasks.prompts import Template

log = logging.getLogger(__name__)

#: Columns every task row has; the others are template fields (``raw_question`` renders as
#: ``{question}``) or shift inputs (e.g. ``scene``).
CORE_COLUMNS = ("image", "label", "image_id")
_HIDDEN = ("partition", "scene")


@dataclass(frozen=True)
class Shift:
    """A named image-distribution shift: pixels change, labels and ids do not.

    Attributes:
        name: The shift name (``task.shifts`` entry).
        fn: ``fn(image, row, rng, **params) -> image``; ``row`` holds the row's columns
            (``image_id``, ``scene``, ...); ``rng`` is seeded from the shift and image id.
        params: Keyword parameters for ``fn`` (from the task manifest).

    Example:
        >>> import sn_interp as sn
        >>> task = sn.load_task("shapes-color", n=20)
        >>> shift = task.shifts["scale"]
        >>> shift.name, dict(shift.params)
        ('scale', {'factor': 0.6})
    """

    name: str
    fn: Callable[..., Image.Image]
    params: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, image: Image.Image, row: Mapping[str, Any]) -> Image.Image:
        """The shifted image of one row (deterministic per shift and ``image_id``)."""
        rng = np.random.default_rng(zlib.crc32(f"{self.name}/{row['image_id']}".encode()))
        return self.fn(image, row, rng, **self.params).convert("RGB")


def stratified_take(labels: Int[np.ndarray, " row"], n: int, rng: np.random.Generator
                    ) -> Int[np.ndarray, " n"]:
    """``n`` indices drawn per class in proportion to the class sizes, sorted.

    Classes get ``floor(n * share)`` rows and the remainders go to the largest fractional
    parts (ties to the lower label), so the draw is deterministic for a generator state.

    Example:
        >>> stratified_take(np.array([0, 0, 0, 1]), 2, np.random.default_rng(0)).size
        2
    """
    classes, counts = np.unique(labels, return_counts=True)
    if n >= len(labels):
        return np.arange(len(labels))
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    order = np.lexsort((classes, -(exact - quota)))
    quota[order[: n - quota.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=False)]
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)


def _count(name: str, value: object, low: int = 1) -> int:
    """``value`` as an int >= ``low``, or one TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


class Task:
    """A categorical VQA task: images, one label each from ``class_names``, prompt templates.

    Build tasks with ``sn.load_task``; the constructor is for task loaders.

    Args:
        name: Task name (``Sample.task``).
        data: Rows with an ``Image`` column ``image``, a ``ClassLabel`` column ``label``,
            a unique string ``image_id``, plus template fields (``raw_question``, ``choices``,
            ...) and shift inputs.
        prompts: Templates by prompt id, in preference order.
        prompt_id: The current template (default: the first).
        shifts: Available shifts by name.
        shift: The current shift, or None.
        split_name: What ``Sample.split`` says (``probe``, ``test``, ``train`` or ``""``).
        description: One line for ``list`` and figures.

    Attributes:
        class_names: The classes, in label order.
        heldout_prompt: The prompt id marked ``heldout`` in the manifest, or None.

    Example:
        >>> import sn_interp as sn
        >>> task = sn.load_task("digits", n=40)
        >>> probe, test = task.split(shots=2, seed=0)
        >>> len(probe), task.class_names[:3]
        (20, ('0', '1', '2'))
    """

    def __init__(self, name: str, data: datasets.Dataset, *, prompts: Mapping[str, Template],
                 prompt_id: str | None = None, shifts: Mapping[str, Shift] | None = None,
                 shift: str | None = None, split_name: str = "", description: str = "") -> None:
        missing = [c for c in CORE_COLUMNS if c not in data.column_names]
        if missing:
            raise ValueError(f"task {name!r}: rows lack the columns {missing}")
        if not isinstance(data.features["label"], datasets.ClassLabel):
            raise TypeError(f"task {name!r}: column 'label' must be a datasets.ClassLabel")
        if not prompts:
            raise ValueError(f"task {name!r} has no prompt templates")
        self.name = name
        self.data = data
        self.class_names: tuple[str, ...] = tuple(data.features["label"].names)
        self.prompts: dict[str, Template] = dict(prompts)
        self.shifts: dict[str, Shift] = dict(shifts or {})
        self.prompt_id = prompt_id or next(iter(self.prompts))
        self.shift = shift
        self.split_name = split_name
        self.description = description
        self._check()

    def _check(self) -> None:
        if self.prompt_id not in self.prompts:
            raise KeyError(f"task {self.name!r} has no prompt {self.prompt_id!r}; "
                           f"known prompts: {list(self.prompts)}")
        if self.shift is not None and self.shift not in self.shifts:
            known = list(self.shifts) or "none"
            raise KeyError(f"task {self.name!r} has no shift {self.shift!r}; known shifts: {known}")
        bad = (self.labels < 0) | (self.labels >= len(self.class_names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"task {self.name!r}: label {int(self.labels[i])} of image "
                             f"{self.image_ids[i]!r} is outside the class list "
                             f"{list(self.class_names)}")
        ids = self.image_ids
        if len(set(ids)) != len(ids):
            first: dict[str, int] = {}
            for row, image_id in enumerate(ids):
                if image_id in first:
                    raise ValueError(f"task {self.name!r}: rows {first[image_id] + 1} and "
                                     f"{row + 1} have the same image_id {image_id!r}; each "
                                     "row needs its own image_id")
                first[image_id] = row
        if self.template.answer_format == "yes_no" and len(self.class_names) != 2:
            raise ValueError(f"prompt {self.prompt_id!r} is yes_no but task {self.name!r} has "
                             f"{len(self.class_names)} classes; yes_no needs exactly two")

    # ---- properties -------------------------------------------------------------------
    @property
    def template(self) -> Template:
        """The current prompt template."""
        return self.prompts[self.prompt_id]

    @property
    def answer_format(self) -> AnswerFormat:
        """``open``, ``multiple_choice`` or ``yes_no``: that of the current template."""
        return self.template.answer_format

    @property
    def heldout_prompt(self) -> str | None:
        """The prompt id held out of micro-VLM training, or None."""
        return next((p for p, t in self.prompts.items() if t.heldout), None)

    @cached_property
    def labels(self) -> Int[np.ndarray, " row"]:
        """Class indices, one per row (int64)."""
        return np.asarray(self.data["label"], dtype=np.int64)

    @cached_property
    def image_ids(self) -> list[str]:
        """Image ids, one per row."""
        return [str(i) for i in self.data["image_id"]]

    @cached_property
    def questions(self) -> list[str]:
        """The rendered question of every row under the current template."""
        fields = [f for f in self.template.fields if f not in ("options", "classes")]
        cols = {f: self._field_column(f) for f in fields}
        choices = self.data["choices"] if "choices" in self.data.column_names else None
        out = []
        for i in range(len(self.data)):
            row = {f: col[i] for f, col in cols.items()}
            if choices is not None:
                row["choices"] = choices[i]
            out.append(self.template.render(self.class_names, row))
        return out

    def _field_column(self, name: str) -> list[Any]:
        column = "raw_question" if name == "question" else name
        if column not in self.data.column_names:
            raise KeyError(f"prompt {self.prompt_id!r} of task {self.name!r} needs the field "
                           f"{name!r}; the rows have {self.data.column_names}")
        return list(self.data[column])

    @cached_property
    def dataset(self) -> datasets.Dataset:
        """The rows as a ``datasets.Dataset``: ``image`` (shifted if the task is), ``question``
        (rendered), ``label``, ``image_id`` and the task's extra columns."""
        data = self.data
        if "question" in data.column_names:
            data = data.remove_columns("question")
        data = data.add_column("question", self.questions)
        if self.shift is not None:
            shift = self.shifts[self.shift]
            data = data.map(lambda row: {"image": shift.apply(row["image"], row)},
                            keep_in_memory=True, desc=f"shift {self.shift}")
        return data

    # ---- samples ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> Task: ...

    def __getitem__(self, i: int | slice) -> Sample | Task:
        """One sample, or for a slice the sub-task of those rows (same split name)."""
        if isinstance(i, slice):
            return self.select(range(len(self))[i])
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for task {self.name!r} of {len(self)} rows")
        i = i % len(self)
        return self._sample(i, self.data[i])

    def __iter__(self) -> Iterator[Sample]:
        for i, row in enumerate(self.data):
            yield self._sample(i, cast(dict[str, Any], row))  # datasets yields dict rows

    def _sample(self, i: int, row: dict[str, Any]) -> Sample:
        image = row["image"]
        if self.shift is not None:
            image = self.shifts[self.shift].apply(image, row)
        sample_id = f"{self.name}/{row['image_id']}/{self.prompt_id}"
        if self.shift is not None:
            sample_id += f"/{self.shift}"
        return Sample(image=image.convert("RGB"), question=self.questions[i],
                      label=int(row["label"]), sample_id=sample_id, task=self.name,
                      prompt_id=self.prompt_id, image_id=str(row["image_id"]),
                      split=self.split_name, class_names=self.class_names,
                      answer_format=self.answer_format)

    # ---- derived tasks ----------------------------------------------------------------
    def _derive(self, **changes: Any) -> Task:
        args: dict[str, Any] = dict(name=self.name, data=self.data, prompts=self.prompts,
                    prompt_id=self.prompt_id, shifts=self.shifts, shift=self.shift,
                    split_name=self.split_name, description=self.description)
        return Task(**{**args, **changes})

    def with_prompt(self, prompt_id: str) -> Task:
        """The same images and labels, questions rendered with another template.

        Example:
            >>> import sn_interp as sn
            >>> task = sn.load_task("digits", n=20)
            >>> task.with_prompt(task.heldout_prompt).prompt_id == task.heldout_prompt
            True
        """
        return self._derive(prompt_id=prompt_id)

    def shifted(self, name: str | None) -> Task:
        """The same images under a named shift (``None``: no shift); labels and ids unchanged.

        Example:
            >>> import sn_interp as sn
            >>> noisy = sn.load_task("digits", n=20).shifted("noisy")
            >>> noisy[0].sample_id.endswith("/noisy")
            True
        """
        return self._derive(shift=name)

    def select(self, indices: Sequence[int] | Int[np.ndarray, " row"],
               split_name: str | None = None) -> Task:
        """The rows at ``indices`` (in that order), optionally relabelled as a split."""
        return self._derive(data=self.data.select(np.asarray(indices, dtype=np.int64)),
                            split_name=self.split_name if split_name is None else split_name)

    def subsample(self, n: int, seed: int = 0) -> Task:
        """At most ``n`` rows, stratified by class and deterministic for ``seed``.

        Example:
            >>> import sn_interp as sn
            >>> len(sn.load_task("digits").subsample(50))
            50
        """
        n, seed = _count("n", n), _count("seed", seed, low=0)
        return self.select(stratified_take(self.labels, n, np.random.default_rng(seed)))

    def split(self, shots: int = 20, seed: int = 0,
              test_size: int | None = None) -> tuple[Task, Task]:
        """A stratified few-shot probe set and a disjoint test set.

        The split depends only on the rows' labels and ``seed``, not on the prompt or shift,
        so ``task.with_prompt(p).split(s, seed)`` holds the same images as
        ``task.split(s, seed)``.

        Args:
            shots: Probe examples per class.
            seed: Seed of the draw.
            test_size: Cap on the test set (stratified); None keeps all the other rows.

        Returns:
            ``(probe, test)`` tasks whose samples say ``split="probe"`` / ``"test"``.

        Raises:
            ValueError: A class has fewer than ``shots`` rows, or nothing is left to test.

        Example:
            >>> import sn_interp as sn
            >>> probe, test = sn.load_task("digits", n=200).split(shots=5, seed=0)
            >>> len(probe), len(test)
            (50, 150)
        """
        shots, seed = _count("shots", shots), _count("seed", seed, low=0)
        test_size = None if test_size is None else _count("test_size", test_size)
        rng = np.random.default_rng(seed)
        probe, rest = [], []
        for c, cls in enumerate(self.class_names):
            idx = np.flatnonzero(self.labels == c)
            if len(idx) < shots:
                raise ValueError(
                    f"task {self.name!r}: class {cls!r} has {len(idx)} examples, fewer than "
                    f"shots={shots}; lower shots, load more images (n=) or drop the class")
            perm = rng.permutation(idx)
            probe.append(perm[:shots])
            rest.append(perm[shots:])
        rest_idx = np.sort(np.concatenate(rest))
        if test_size is not None:
            rest_idx = rest_idx[stratified_take(self.labels[rest_idx], test_size, rng)]
        if len(rest_idx) == 0:
            raise ValueError(f"task {self.name!r}: no rows left for the test set after "
                             f"{shots} shots per class; lower shots or load more images")
        return (self.select(np.sort(np.concatenate(probe)), "probe"),
                self.select(rest_idx, "test"))

    def __repr__(self) -> str:
        shift = f", shift={self.shift!r}" if self.shift else ""
        split = f", split={self.split_name!r}" if self.split_name else ""
        return (f"Task({self.name!r}, n={len(self)}, classes={len(self.class_names)}, "
                f"prompt={self.prompt_id!r}, format={self.answer_format!r}{shift}{split})")
