"""What a fitted classifier checks before it answers, and when it is read back from disk.

A selection's neuron indices mean nothing on another model (or a checkpoint of other
widths), and its class indices mean nothing for another task's class list: both are refused,
naming what the classifier was fitted on and what it was given. A saved classifier carries
sha256 checksums of its files, so an edited or truncated file, or a NaN parameter, is refused
at load with one line naming the file.

Example:
    >>> check_compatible({"model_id": "a"}, ("x", "y"), {"model_id": "b"}, "acts")
    Traceback (most recent call last):
    ...
    ValueError: acts come from model 'b', but this classifier was fitted on model 'a': ...
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

#: Width attributes that must agree between fit and prediction (when both record them).
WIDTHS = ("n_layers", "n_heads", "d_head", "d_model", "d_mlp", "n_vision_layers")


class ClassifierFileError(ValueError):
    """A saved classifier's file is missing, unreadable, edited, truncated or holds NaN."""


def check_compatible(fitted: dict[str, Any], class_names: Sequence[str],
                     given: dict[str, Any], what: str,
                     given_classes: Sequence[str] | None = None) -> None:
    """Refuse inputs of another model (id, revision, widths) or another class list.

    Args:
        fitted: Attributes recorded at fit time (``model_id``, ``model_revision``, widths).
        class_names: The classifier's class list.
        given: The same attributes of the input (activation attrs or a model's).
        what: How the input is named in the message (``acts``, ``samples``, ``model``).
        given_classes: The input's class list, when it has one.
    """
    fix = ("neuron indices do not transfer between models; extract with the model it was "
           "fitted on")
    for key, label in (("model_id", "model"), ("model_revision", "model revision")):
        a, b = str(fitted.get(key) or ""), str(given.get(key) or "")
        if a and b and a != b:
            raise ValueError(f"{what} come from {label} {b!r}, but this classifier was fitted "
                             f"on {label} {a!r}: {fix}")
    diffs = [f"{k} {given[k]} (fitted on {fitted[k]})" for k in WIDTHS
             if _known(fitted.get(k)) and _known(given.get(k))
             and int(fitted[k]) != int(given[k])]
    if diffs:
        raise ValueError(f"{what} have other widths than the model this classifier was "
                         f"fitted on: {', '.join(diffs)}; {fix}")
    if given_classes and tuple(given_classes) != tuple(class_names):
        raise ValueError(f"{what} use the class list {list(given_classes)}, but this "
                         f"classifier was fitted on {list(class_names)}: class indices would "
                         "be meaningless; use samples of the task it was fitted on")


def _known(v: object) -> bool:
    return v not in (None, "") and not (isinstance(v, float) and np.isnan(v))


def widths_of(acts: xr.Dataset | xr.DataArray) -> dict[str, int]:
    """The widths an activation Dataset actually has (from its dims, whatever its attrs say)."""
    names = {"d_model": "d_model", "d_mlp": "d_mlp", "d_head": "d_head", "head": "n_heads"}
    return {key: int(acts.sizes[dim]) for dim, key in names.items() if dim in acts.sizes}


def classes_of_attrs(attrs: dict[str, Any]) -> tuple[str, ...] | None:
    """The class list recorded in an activation Dataset's attrs (None when absent)."""
    raw = attrs.get("class_names")
    if not raw:
        return None
    names = json.loads(raw) if isinstance(raw, str) else list(raw)
    return tuple(str(n) for n in names) or None


def sha256_of(path: Path) -> str:
    """The sha256 of a (small) file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_json(path: Path, what: str, keys: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object with the given keys of the given types, or one ClassifierFileError."""
    if not path.is_file():
        raise ClassifierFileError(f"{path} is missing: this is not a complete saved {what}; "
                                  "save it again")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ClassifierFileError(f"{path} is not valid JSON ({err}): the saved {what} was "
                                  "edited or truncated; save it again") from None
    if not isinstance(data, dict):
        raise ClassifierFileError(f"{path} holds a {type(data).__name__}, not an object: "
                                  f"not a saved {what}")
    bad = [f"{k} ({t.__name__ if isinstance(t, type) else '/'.join(x.__name__ for x in t)})"
           for k, t in keys.items()
           if k not in data or not isinstance(data[k], t) or isinstance(data[k], bool)
           and t is int]
    if bad:
        raise ClassifierFileError(f"{path} lacks or mistypes {', '.join(bad)}: the saved "
                                  f"{what} was edited; save it again")
    return data


def verify_checksum(path: Path, expected: str | None, what: str) -> None:
    """Refuse a file whose sha256 differs from the one recorded when it was saved."""
    if not path.is_file():
        raise ClassifierFileError(f"{path} is missing: the saved {what} is incomplete; "
                                  "save it again")
    if expected and sha256_of(path) != expected:
        raise ClassifierFileError(f"{path} was edited or truncated since it was saved "
                                  f"(sha256 differs from the recorded one); save the {what} "
                                  "again")


def check_finite(table: xr.Dataset, path: Path, names: Sequence[str]) -> None:
    """Refuse a table whose parameters hold NaN, naming the file and variables.

    (Infinite thresholds are legitimate: a rule that puts every value on one side.)
    """
    bad = [n for n in names if n in table and np.isnan(np.asarray(table[n].values,
                                                                  float)).any()]
    if bad:
        raise ClassifierFileError(f"{path} holds NaN in {bad}: the classifier cannot "
                                  "vote with them; refit and save it again")
