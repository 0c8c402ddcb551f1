"""Per-thread scratch arrays for the scoring kernels (reused across blocks: no page faults)."""

from __future__ import annotations

import threading

import numpy as np
from jaxtyping import Shaped
from numpy.typing import DTypeLike

_local = threading.local()


def buffer(name: str, shape: tuple[int, ...], dtype: DTypeLike) -> Shaped[np.ndarray, "*shape"]:
    """A per-thread scratch array of ``shape`` (reused across blocks: no allocation)."""
    size = int(np.prod(shape))
    buf = getattr(_local, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(max(size, 1), dtype)
        setattr(_local, name, buf)
    return buf[:size].reshape(shape)


def release() -> None:
    """Drop every thread's scratch arrays (tens of MB per thread) once scoring is done."""
    global _local
    _local = threading.local()
