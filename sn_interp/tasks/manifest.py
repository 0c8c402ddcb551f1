"""Task manifests: the TOML files under ``data/tasks/`` (class lists, prompts, shift params).

``$SN_INTERP_TASKS_DIR`` overrides the directory (for tests and user manifests).

Example:
    >>> manifest("embedded")["digits"]["classes"][:3]
    ['0', '1', '2']
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any  # a task manifest is parsed JSON (mixed types)


def manifest_dir() -> Path:
    """The directory holding the task manifests."""
    env = os.environ.get("SN_INTERP_TASKS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "tasks"


@cache
def manifest(name: str) -> dict[str, Any]:
    """The parsed manifest ``data/tasks/<name>.toml`` (``embedded`` or ``hub``)."""
    path = manifest_dir() / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"task manifest {path} is missing; it ships with the sn_interp "
                                "repository (install it with `pip install -e .` from a checkout)")
    with path.open("rb") as f:
        return tomllib.load(f)
