"""Where sn_interp keeps what it builds or generates at run time (never committed).

``$SN_INTERP_CACHE`` if set, else ``$XDG_CACHE_HOME/sn_interp``, else ``~/.cache/sn_interp``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache directory (created), or a sub-directory of it."""
    root = os.environ.get("SN_INTERP_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "sn_interp"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_atomically(final: Path, build: Callable[[Path], object],
                     is_current: Callable[[Path], bool]) -> Path:
    """``final``, built by ``build(tmp)`` into a temporary sibling and renamed into place.

    An interrupted build never leaves a half directory: leftovers of builds whose process no
    longer runs are deleted first, an outdated ``final`` is replaced, and losing a race to a
    concurrent builder keeps theirs when it is current.
    """
    root, name = final.parent, final.name
    for path in root.glob(f".{name}.tmp-*"):
        pid = path.name.removeprefix(f".{name}.tmp-").split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build(tmp)
        if final.exists():
            trash = root / f".{name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:
            if not is_current(final):  # lost a race to a concurrent builder: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _pid_alive(pid: int) -> bool:
    """True when a process with id ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
