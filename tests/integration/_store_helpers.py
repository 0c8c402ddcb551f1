"""Shared by the store reliability tests: toy samples, a small extraction, a file digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

import sn_interp as sn

SITES, LAYERS = ["resid_post", "z"], [0, 1]


def samples(n: int, *, ids: bool = True, seed: int = 2, question: str = "What digit is this?",
            labels: list[int] | None = None) -> list[sn.Sample]:
    """``n`` random 32x32 images with labels 0, 1, 2, ... (ids ``s<i>`` unless ``ids=False``)."""
    rng = np.random.default_rng(seed)
    return [sn.Sample(Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)), question,
                      label=(labels[i] if labels else i % 3), class_names=("0", "1", "2"),
                      sample_id=f"s{i}" if ids else None, prompt_id="p0", task="toy")
            for i in range(n)]


def extract(vlm, items, path, **kw):
    """Two sites, two layers, batches of 2, into the store ``path``."""
    return sn.extract(vlm, items, sites=SITES, layers=LAYERS, batch_size=2, store=path,
                      progress=False, **kw)


def tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path``."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}
