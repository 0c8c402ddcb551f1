"""The task registry and ``load_task``.

Example:
    >>> import sn_interp as sn
    >>> task = sn.load_task("shapes-count", n=100, prompt="open")
    >>> task.answer_format
    'open'
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any  # loader options are forwarded as given (each loader checks its own)

from sn_interp.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: ``loader(partition=..., **options) -> Task``."""

    name: str
    loader: Callable[..., Task]
    kind: str  # "embedded" or "hub"
    description: str = ""


REGISTRY: dict[str, TaskEntry] = {}


def register_task(name: str, loader: Callable[..., Task], *, kind: str = "user",
                  description: str = "") -> None:
    """Register a task loader under ``name`` (it must accept ``partition=``).

    Example:
        >>> register_task("my-digits", lambda partition="eval": load_task("digits"))
    """
    REGISTRY[name] = TaskEntry(name, loader, kind, description)


def list_tasks() -> dict[str, TaskEntry]:
    """The registered tasks by name (embedded first, then hub adapters, then user ones).

    Example:
        >>> from sn_interp.tasks import list_tasks
        >>> names = list(list_tasks())[:3]
        >>> names
        ['digits', 'mnist', 'fashion-mnist']
    """
    _register_builtins()
    return dict(REGISTRY)


def _register_builtins() -> None:
    if REGISTRY.get("digits"):
        return
    from sn_interp.tasks import hub
    from sn_interp.tasks.embedded import embedded_names, load_embedded
    from sn_interp.tasks.manifest import manifest

    for name in embedded_names():
        def loader(partition: str = "eval", _name: str = name) -> Task:
            return load_embedded(_name, partition=partition)
        register_task(name, loader, kind="embedded",
                      description=manifest("embedded")[name].get("description", ""))
    for name, adapter in hub.ADAPTERS.items():
        register_task(name, adapter.load, kind="hub", description=adapter.description)


def _call_loader(entry: TaskEntry, partition: str, options: dict[str, Any]) -> Task:
    params = inspect.signature(entry.loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return entry.loader(partition=partition, **options)  # the loader checks its options
    allowed = [p for p in params if p != "partition" and not p.startswith("_")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"task {entry.name!r} has no option(s) {unknown}; "
                        f"its options are {allowed or 'none'}")
    return entry.loader(partition=partition, **options)


def load_task(name_or_path: str | Path, *, partition: str = "eval", n: int | None = None,
              seed: int = 0, prompt: str | None = None, shift: str | None = None,
              **options: Any) -> Task:
    """Load a task by registry name, or from a user ``.jsonl`` file or image folder.

    Args:
        name_or_path: A registered name (``python -m sn_interp.tasks list``), a ``.jsonl``
            file of ``{"image", "question", "label"}`` records, or a folder with one
            sub-folder of images per class.
        partition: Embedded tasks: ``eval`` (default; draw probe/test splits here),
            ``train`` (reserved for training the micro VLMs) or ``all``. Hub tasks map it to
            their own split unless ``split=`` is given (see ``sn_interp.tasks.hub``); user
            data ignores it.
        n: Keep at most ``n`` images, stratified by class, deterministic for ``seed``.
        seed: Seed of the ``n`` cap (the image set itself is fixed).
        prompt: Prompt id (default: the task's first template).
        shift: Image-distribution shift name (default: none).
        **options: Task-specific options, each documented by its loader: hub tasks take
            ``path=``, ``data_dir=``, ``split=`` (and e.g. ``category=`` for POPE); user
            data takes ``classes=`` and ``question=``. Unknown options raise ``TypeError``.

    Returns:
        The task.

    Example:
        >>> task = load_task("digits", n=200, prompt="open")
        >>> len(task), task.class_names[0]
        (200, '0')
    """
    _register_builtins()
    key = str(name_or_path)
    if key in REGISTRY:
        task = _call_loader(REGISTRY[key], partition, options)
    elif Path(key).suffix == ".jsonl" or Path(key).is_dir():
        from sn_interp.tasks import local

        loader = local.load_jsonl if Path(key).suffix == ".jsonl" else local.load_folder
        task = _call_loader(TaskEntry(key, functools.partial(loader, key), "user"), partition,
                            options)
    else:
        raise KeyError(f"unknown task {key!r}: not a registered task, a .jsonl file or an "
                       f"image folder. Registered: {sorted(REGISTRY)}")
    if n is not None:
        task = task.subsample(n, seed)
    if prompt is not None:
        task = task.with_prompt(prompt)
    if shift is not None:
        task = task.shifted(shift)
    log.debug("loaded %r", task)
    return task
