"""Offline random-weight tiny checkpoints of every supported VLM class, for tests and demos.

Each tiny model is a real HuggingFace checkpoint directory (``config.json``,
``model.safetensors``, ``generation_config.json``, tokenizer, image/video processor, chat
template) built entirely in code, so ``AutoProcessor.from_pretrained(path)`` and
``<ModelClass>.from_pretrained(path)`` work without network access::

    from sn_interp.checkpoints.tiny import tiny_path
    path = tiny_path("tiny-qwen3-vl")          # built into the cache on first use

The same name always yields bit-identical weights: each spec has a fixed seed and the model is
initialised in float32 right after seeding. Builds are atomic (built in a temporary directory,
then renamed) and carry a marker file with a format version, so a killed build never leaves a
half checkpoint and a format change rebuilds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedModel

from sn_interp.cache import build_atomically, cache_dir
from sn_interp.checkpoints.tokenizer import build_tokenizer
from sn_interp.models.registry import TinySpec, tiny_specs

__all__ = [
    "MARKER",
    "TINY_FORMAT_VERSION",
    "TINY_MODELS",
    "TINY_NAMES",
    "TinySpec",
    "build_tiny",
    "tiny_path",
]

#: Bump when anything that changes the saved checkpoint changes (configs, tokenizer, seeds).
TINY_FORMAT_VERSION = 2
#: Marker file written last into a finished checkpoint directory.
MARKER = "sn_interp_tiny.json"


#: Every tiny checkpoint, from the family modules: name -> spec.
TINY_MODELS: dict[str, TinySpec] = tiny_specs()
#: Names of all tiny checkpoints, in registry order.
TINY_NAMES: tuple[str, ...] = tuple(TINY_MODELS)


# --------------------------------------------------------------------------- building


def _spec(name: str) -> TinySpec:
    """Look up a spec, or fail with the known names."""
    try:
        return TINY_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown tiny model {name!r}; known tiny models: {', '.join(TINY_NAMES)}"
        ) from None


def _marker(spec: TinySpec) -> dict[str, object]:
    """Contents of the marker file of a finished checkpoint."""
    return {
        "name": spec.name,
        "version": TINY_FORMAT_VERSION,
        "seed": spec.seed,
        "family": spec.family,
        "model_class": spec.model_class,
        "transformers": transformers.__version__,
    }


def _is_current(path: Path, spec: TinySpec) -> bool:
    """True when ``path`` holds a finished checkpoint of ``spec`` in the current format."""
    try:
        found = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return found == _marker(spec)


def _seeded_model(spec: TinySpec, config: PretrainedConfig) -> PreTrainedModel:
    """Construct the model in float32 right after seeding torch with the spec's seed."""
    cls = getattr(transformers, spec.model_class)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.float().eval()


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' progress bars (e.g. "Writing model shards") for the duration."""
    hf_logging = transformers.utils.logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_tiny(name: str, out_dir: str | os.PathLike[str]) -> Path:
    """Build tiny checkpoint ``name`` into ``out_dir`` (created) and return it.

    Writes the model (``model.safetensors``, float32), config, generation config, processor
    (tokenizer, image and video processors, chat template) and, last, the marker file.
    Not atomic by itself; :func:`tiny_path` builds into a temporary directory and renames.
    """
    spec = _spec(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(spec.tokenizer_family, chat_template=spec.chat_template)
    config = spec.make_config(tok)
    config.dtype = torch.float32
    model = _seeded_model(spec, config)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (
        tok.pad_token_id,
        tok.eos_token_id,
        tok.bos_token_id,
    )
    gen.do_sample = False
    with _quiet_progress():
        model.save_pretrained(out)
    spec.make_processor(tok).save_pretrained(out)
    (out / MARKER).write_text(json.dumps(_marker(spec), indent=2, sort_keys=True) + "\n")
    return out


def tiny_path(name: str, *, rebuild: bool = False) -> Path:
    """Directory of tiny checkpoint ``name`` in the cache, building it first if needed.

    The checkpoint is built into a temporary sibling directory and renamed into place, so an
    interrupted build never leaves a half checkpoint. A directory whose marker is missing or
    from another format version is rebuilt; ``rebuild=True`` always rebuilds.
    """
    spec = _spec(name)
    final = cache_dir("models") / name
    if not rebuild and _is_current(final, spec):
        return final
    return build_atomically(final, partial(build_tiny, name),
                            lambda path: _is_current(path, spec))
