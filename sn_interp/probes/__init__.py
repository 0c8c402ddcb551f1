"""Probes: Super Neurons, SAV heads, the model's own zero-shot answer, and evaluation.

Example:
    >>> import sn_interp as sn
    >>> found = sn.find_super_neurons(acts, k=20)    # doctest: +SKIP
    >>> sn.evaluate(found.predict(test_acts))        # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sn_interp.probes.evaluate import evaluate
from sn_interp.probes.linear import linear_probe
from sn_interp.probes.null import selection_null
from sn_interp.probes.sav import SAVHeads, find_sav_heads
from sn_interp.probes.stability import selection_stability
from sn_interp.probes.super_neurons import SuperNeurons, find_super_neurons

if TYPE_CHECKING:  # provided lazily by __getattr__ below
    from sn_interp.probes.baseline import map_answer, zero_shot


def __getattr__(name: str) -> object:  # zero_shot imports torch lazily
    if name in ("zero_shot", "map_answer"):
        from sn_interp.probes import baseline
        return getattr(baseline, name)
    raise AttributeError(f"module 'sn_interp.probes' has no attribute {name!r}")


__all__ = ["SAVHeads", "SuperNeurons", "evaluate", "find_sav_heads", "find_super_neurons",
           "linear_probe", "map_answer", "selection_null", "selection_stability", "zero_shot"]
