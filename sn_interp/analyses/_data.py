"""The load stage analyses share: models (cached per process), tasks, splits, stores.

An analysis's ``load(cfg)`` (its IO stage: models loaded, activation stores written or
opened) returns a :class:`Loaded`; its ``run(cfg, loaded)`` computes from that alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

import numpy as np
import xarray as xr
from jaxtyping import Float

from sn_interp.analyses._common import StudyConfig

if TYPE_CHECKING:
    from sn_interp.models import VLM
    from sn_interp.probes import SuperNeurons
    from sn_interp.sample import Sample
    from sn_interp.tasks import Task

CfgT = TypeVar("CfgT", bound=StudyConfig)
CellT = TypeVar("CellT")

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def model(name: str, dtype: str = "float32", device_map: str | None = None) -> VLM:
    """A loaded VLM, kept for the process so several analyses of a report share it."""
    from sn_interp.models import load_model

    if device_map is None:
        return load_model(name, dtype=dtype)
    return load_model(name, dtype=dtype, device_map=device_map)


def vlm(cfg: StudyConfig, name: str) -> VLM:
    """The model ``name`` as ``cfg`` asks for it (dtype, device map), cached per process.

    Calls :func:`model` exactly as ``model(name, cfg.dtype)`` without a device map, so both
    spellings share one cached model.
    """
    if cfg.device_map is None:
        return model(name, cfg.dtype)
    return model(name, cfg.dtype, cfg.device_map)


def split(cfg: StudyConfig, task: str, *, prompt: str | None = None,
          shift: str | None = None) -> tuple[Task, Task]:
    """The (probe, test) split of a task under a prompt and shift, as the config draws it."""
    from sn_interp.tasks import load_task

    loaded = load_task(task, n=cfg.n, seed=cfg.seed, prompt=prompt, shift=shift)
    return loaded.split(shots=cfg.shots, seed=cfg.seed, test_size=cfg.test_size)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def store_path(cfg: StudyConfig, vlm: VLM, samples: Sequence[Sample], tag: str) -> Path:
    """Where the activations of ``samples`` live: one zarr store per model/task/prompt/split."""
    first = samples[0]
    parts = [first.task or "samples", first.prompt_id or "p", tag,
             f"n{cfg.n}-shots{cfg.shots}-seed{cfg.seed}-test{cfg.test_size}"]
    return Path(cfg.stores) / _slug(vlm.model_id) / ("-".join(_slug(p) for p in parts) + ".zarr")


def acts(cfg: StudyConfig, vlm: VLM, samples: Iterable[Sample], tag: str, *,
         sites: Sequence[str] | None = None, layers: Sequence[int] | None = None) -> xr.Dataset:
    """Activations of ``samples`` (all sites, all layers by default), through a reused store.

    ``tag`` names the sample set (``probe``, ``test``, ``test-noisy``, ...). A finished store is
    reused without running the model; a store written for other content (samples, images,
    prompt text, labels, model weights) is refused by :func:`sn_interp.extract` with a message
    naming what changed, or rebuilt with ``--overwrite-stores``.
    """
    from sn_interp.analyses._common import extraction_workers
    from sn_interp.extraction import extract

    samples = list(samples)
    path = store_path(cfg, vlm, samples, tag + ("" if sites is None else "-" + "_".join(sites)))
    path.parent.mkdir(parents=True, exist_ok=True)
    return extract(vlm, samples, sites=sites, layers=layers, batch_size=cfg.batch_size,
                   store=path, overwrite=cfg.overwrite_stores, workers=extraction_workers(),
                   progress=cfg.progress)


def head_acts(cfg: StudyConfig, vlm: VLM, samples: Iterable[Sample], tag: str,
              acts_all: xr.Dataset) -> xr.Dataset:
    """Activations with the per-head site ``z``, for SAV heads.

    ``acts_all`` itself when it has ``z``; for models with ``z`` on some layers only (hybrid
    attention), ``z`` on those layers, through its own store.
    """
    if "z" in acts_all:
        return acts_all
    return acts(cfg, vlm, samples, tag, sites=("z",), layers=vlm.site_layers("z"))


def n_heads(vlm: VLM) -> int:
    """Attention heads of the language model (layers with ``z`` x heads per layer)."""
    return len(vlm.site_layers("z")) * vlm.dims.n_heads


def accuracy_fields(ev: xr.Dataset) -> tuple[float, float, float]:
    """(accuracy, low, high) of an :func:`sn_interp.evaluate` result."""
    return float(ev.accuracy), float(ev.accuracy_low), float(ev.accuracy_high)


def pad_layers(values: dict[int, float], n_layers: int, size: int) -> Float[np.ndarray, " layer"]:
    """Per-layer values in an array of ``size`` (NaN past the model's own ``n_layers``)."""
    out = np.full(size, np.nan)
    for layer, v in values.items():
        if layer < n_layers:
            out[layer] = v
    return out


# ---- the load stage -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Loaded(Generic[CellT]):
    """What an analysis's load stage produced: the models and each (model, task)'s inputs."""

    models: dict[str, VLM]
    cells: dict[tuple[str, str], CellT]


def load_cells(cfg: CfgT, load_cell: Callable[[CfgT, VLM, str], CellT]) -> Loaded[CellT]:
    """Load every model of ``cfg`` once and ``load_cell(cfg, vlm, task)`` for every cell."""
    models = {m: vlm(cfg, m) for m in cfg.models}
    return Loaded(models, {(m, t): load_cell(cfg, models[m], t)
                           for m in cfg.models for t in cfg.tasks})


class Acts(NamedTuple):
    """The activations of one probe split and of its test split (empty if not extracted)."""

    probe: xr.Dataset
    test: xr.Dataset

    def resident(self) -> Acts:
        """Both splits in memory when each fits :data:`RESIDENT_BYTES` (see :func:`resident`)."""
        return Acts(resident(self.probe), resident(self.test))


def resident_pair(acts: Acts, heads: Acts) -> tuple[Acts, Acts]:
    """``acts`` and ``heads`` (the splits with ``z``, see :func:`head_acts`) in memory; ``heads``
    is the same object as ``acts`` when it was (no second copy)."""
    mem = acts.resident()
    return mem, (mem if heads.probe is acts.probe else heads.resident())


#: Largest activation Dataset a cell reads into memory (bytes); larger ones stay on disk and
#: are scored out of core, block by block.
RESIDENT_BYTES = 2 * 2**30


def resident(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` computed into memory if it holds at most :data:`RESIDENT_BYTES`, else ``ds``.

    A cell reads its stores many times (the search, SAV heads, every null permutation's test
    accuracy, every stability bootstrap, predictions); from a store each pass reads and
    decompresses every (batch, layer) chunk again. Computed once, the passes read memory.
    The copy lives only as long as the cell's reference to it.
    """
    return ds.compute() if ds.nbytes <= RESIDENT_BYTES else ds


def split_acts(cfg: StudyConfig, vlm: VLM, task: str, *, prompt: str | None,
               shift: str | None = None, with_test: bool = True) -> Acts:
    """Activations of a task's probe split (and test split) under a prompt and shift."""
    probe, test = split(cfg, task, prompt=prompt, shift=shift)
    suffix = f"-{shift}" if shift else ""
    a_probe = acts(cfg, vlm, probe, "probe" + suffix)
    a_test = acts(cfg, vlm, test, "test" + suffix) if with_test else xr.Dataset()
    return Acts(a_probe, a_test)


def select(cfg: StudyConfig, a_probe: xr.Dataset) -> SuperNeurons:
    """Super Neurons selected on probe activations with the study's k, rule, score, seed."""
    from sn_interp.analyses._reuse import acts_key, reuse
    from sn_interp.probes import find_super_neurons

    key = acts_key(a_probe)
    return reuse("Super Neuron selection",
                 None if key is None else (key, cfg.k, cfg.rule, cfg.score, cfg.seed),
                 lambda: find_super_neurons(a_probe, k=cfg.k, rule=cfg.rule, score=cfg.score,
                                            seed=cfg.seed, progress=cfg.progress))


def zero_shot(cfg: StudyConfig, vlm: VLM, samples: Sequence[Sample], *, mode: str,
              max_new_tokens: int) -> xr.Dataset:
    """:func:`sn_interp.zero_shot` of ``samples``, once per process for the same content."""
    from sn_interp.analyses._reuse import reuse, samples_key
    from sn_interp.probes import zero_shot

    samples = list(samples)
    return reuse("zero-shot answers",
                 (samples_key(vlm, samples), mode,
                  max_new_tokens if mode == "generate" else None, cfg.batch_size),
                 lambda: zero_shot(vlm, samples, mode=mode, max_new_tokens=max_new_tokens,
                                   batch_size=cfg.batch_size, progress=cfg.progress))


# ---- task prompts and shifts ----------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def task_meta(task: str, n: int | None, seed: int) -> Task:
    """The loaded task (for its prompts, shifts and classes), cached per process."""
    from sn_interp.tasks import load_task

    return load_task(task, n=n, seed=seed)


def check_names(cfg: StudyConfig, *, prompts: Sequence[str] = (),
                shifts: Sequence[str] = ()) -> None:
    """Refuse prompt ids / shift names that none of the study's tasks has (likely typos)."""
    metas = [task_meta(t, cfg.n, cfg.seed) for t in cfg.tasks]
    for what, names in (("prompts", prompts), ("shifts", shifts)):
        known = {x for m in metas for x in getattr(m, what)}
        unknown = [x for x in names if x not in known]
        if unknown:
            raise ValueError(f"no task of {list(cfg.tasks)} has the {what} {unknown}; "
                             f"they have {sorted(known)}")


def resolve(wanted: Sequence[str], available: Sequence[str], what: str, task: str) -> list[str]:
    """The ids of ``wanted`` a task has (all of ``available`` when ``wanted`` is empty)."""
    if not wanted:
        return list(available)
    missing = [w for w in wanted if w not in available]
    if missing:
        log.warning("task %s has no %s %s (it has %s); skipping them", task, what, missing,
                    list(available))
    return [w for w in wanted if w in available]
