"""Tasks: categorical VQA tasks as HuggingFace datasets, with prompts, shifts and splits.

- ``load_task(name_or_path, ...) -> Task``: embedded offline tasks (``digits``, ``mnist``,
  ``fashion-mnist``, ``shapes-*``), the papers' hub benchmarks (``pope``, ``eurosat``, ...),
  or the user's own ``.jsonl`` file / image folder.
- ``Task.split(shots, seed)``: stratified few-shot probe set and disjoint test set.
- ``Task.with_prompt(id)``, ``Task.shifted(name)``: other templates, image shifts.
- ``python -m sn_interp.tasks list | show <task>``: the registry; a PNG grid of examples.

Example:
    >>> import sn_interp as sn
    >>> probe, test = sn.load_task("digits", n=300).split(shots=10, seed=0)
    >>> next(iter(probe)).split
    'probe'
"""

from __future__ import annotations

from sn_interp.tasks.base import Shift, Task, stratified_take
from sn_interp.tasks.hub import HubUnavailableError
from sn_interp.tasks.prompts import Template
from sn_interp.tasks.registry import list_tasks, load_task, register_task

__all__ = ["HubUnavailableError", "Shift", "Task", "Template", "list_tasks", "load_task",
           "register_task", "stratified_take"]
