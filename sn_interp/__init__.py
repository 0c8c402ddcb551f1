"""sn_interp: Super Neurons in vision-language models.

Public API (DESIGN section 4)::

    import sn_interp as sn
    vlm = sn.load_model("tiny-llava")
    task = sn.load_task("digits")
    probe, test = task.split(shots=20, seed=0)
    acts = sn.extract(vlm, probe)
    found = sn.find_super_neurons(acts, k=20)
    pred = found.predict(sn.extract(vlm, test, sites=found.sites, layers=found.layers))
    heads = sn.find_sav_heads(acts, k=20)
    base = sn.zero_shot(vlm, test)
    clf = sn.EarlyExitClassifier(vlm, found)
    clf.predict(test)

Names resolve lazily, so ``import sn_interp`` stays cheap (torch loads on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sn_interp._version import __version__ as __version__

_API: dict[str, str] = {
    "Sample": "sn_interp.sample",
    "load_model": "sn_interp.models",
    "VLM": "sn_interp.models",
    "load_task": "sn_interp.tasks",
    "Task": "sn_interp.tasks",
    "extract": "sn_interp.extraction",
    "open_store": "sn_interp.store",
    "find_super_neurons": "sn_interp.probes",
    "SuperNeurons": "sn_interp.probes",
    "find_sav_heads": "sn_interp.probes",
    "SAVHeads": "sn_interp.probes",
    "zero_shot": "sn_interp.probes",
    "evaluate": "sn_interp.probes",
    "selection_null": "sn_interp.probes",
    "selection_stability": "sn_interp.probes",
    "EarlyExitClassifier": "sn_interp.early_exit",
}
_SUBMODULES = ("names", "models", "tasks", "probes", "early_exit", "plotting", "analyses", "store")

__all__ = sorted([*_API, *_SUBMODULES, "__version__"])

if TYPE_CHECKING:  # pragma: no cover (names re-exported lazily below)
    from sn_interp.early_exit import EarlyExitClassifier  # noqa: F401
    from sn_interp.extraction import extract  # noqa: F401
    from sn_interp.models import VLM, load_model  # noqa: F401
    from sn_interp.probes import (  # noqa: F401
        SAVHeads,
        SuperNeurons,
        evaluate,
        find_sav_heads,
        find_super_neurons,
        selection_null,
        selection_stability,
        zero_shot,
    )
    from sn_interp.sample import Sample  # noqa: F401
    from sn_interp.store import open_store  # noqa: F401
    from sn_interp.tasks import Task, load_task  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"sn_interp.{name}")
    else:
        raise AttributeError(f"module 'sn_interp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
