"""Where sn_interp keeps what it builds or generates at run time (never committed).

``$SN_INTERP_CACHE`` if set, else ``$XDG_CACHE_HOME/sn_interp``, else ``~/.cache/sn_interp``.
"""

from __future__ import annotations

import os
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
