"""Content fingerprints: what a store's activations and labels depend on, as hashes.

An activation store is identified by its content, not by names: the bytes of every image,
the full prompt text the model reads, the labels and class list, and the content of the
model's files. Hashing a multi-gigabyte checkpoint on every load would be slow, so file
hashes are cached under ``$SN_INTERP_CACHE/hashes``, keyed on (path, size, mtime_ns, inode):
rewriting a file in place (a re-saved fine-tune) changes its mtime and so its key.

Example:
    >>> from pathlib import Path
    >>> from sn_interp.fingerprint import file_sha256
    >>> p = Path("/tmp/_fp_example.txt"); _ = p.write_text("hello")
    >>> file_sha256(p)[:12]
    '2cf24dba5fb0'
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sn_interp.cache import cache_dir
from sn_interp.sample import Sample

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Files of a checkpoint directory whose content determines activations (weights, model
#: config, processor/tokenizer configs, chat templates); model cards and images are not.
CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt", ".tiktoken")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, cached by (path, size, mtime_ns, inode)."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode())
    entry = cache_dir("hashes") / key.hexdigest()[:40]
    if entry.exists():
        cached = entry.read_text().strip()
        if len(cached) == 64:
            return cached
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}")
    tmp.write_text(digest)
    os.replace(tmp, entry)  # atomic: concurrent processes write the same value
    log.debug("hashed %s (%d bytes)", path, st.st_size)
    return digest


def checkpoint_sha256(folder: str | Path) -> str:
    """One hash over the names and contents of a checkpoint directory's model files.

    Example:
        >>> checkpoint_sha256("data/models/micro-llava")[:8]  # doctest: +SKIP
        '3f1c09aa'
    """
    folder = Path(folder)
    h = hashlib.sha256()
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
    for f in files:
        h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def module_sha256(module: torch.nn.Module) -> str:
    """A hash of a torch module's parameters and buffers (names, dtypes, shapes, bytes).

    For models wrapped in memory (:func:`sn_interp.models.wrap`), which have no weight files;
    computed on each call, since in-memory weights can change in place.
    """
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def image_sha256(sample: Sample) -> str:
    """The hash of a sample's decoded image (mode, size and pixel bytes)."""
    im = sample.image
    h = hashlib.sha256(f"{im.mode}\0{im.size[0]}x{im.size[1]}\0".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def _label_text(s: Sample) -> str:
    return f"{s.label}\0{s.label_name or ''}\0{'|'.join(s.class_names)}"


def sample_id_from_content(sample: Sample, image_hash: str | None = None) -> str:
    """A stable id for a sample without one: a hash of its image, question and label."""
    h = hashlib.sha256((image_hash or image_sha256(sample)).encode())
    h.update(f"\0{sample.question}\0{_label_text(sample)}".encode())
    return "sha256-" + h.hexdigest()[:16]


def content_digests(samples: Sequence[Sample], prompt: Callable[[str], str],
                    image_hashes: Iterable[str] | None = None) -> dict[str, str]:
    """Hashes of what determines a sample list's activations and labels, in order.

    Args:
        samples: The samples, in store order.
        prompt: Renders a question into the full text the model reads (chat template
            included), e.g. ``vlm.prompt``.
        image_hashes: Precomputed :func:`image_sha256` of each sample (computed if None).

    Returns:
        ``images_sha256``, ``prompts_sha256`` and ``labels_sha256``.
    """
    hashes = list(image_hashes) if image_hashes is not None else [image_sha256(s) for s in samples]
    rendered: dict[str, str] = {}
    images, prompts, labels = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    for s, image_hash in zip(samples, hashes, strict=True):
        if s.question not in rendered:
            rendered[s.question] = prompt(s.question)
        images.update(f"{image_hash}\n".encode())
        prompts.update(hashlib.sha256(rendered[s.question].encode()).digest())
        labels.update(f"{_label_text(s)}\n".encode())
    return {"images_sha256": images.hexdigest(), "prompts_sha256": prompts.hexdigest(),
            "labels_sha256": labels.hexdigest()}
