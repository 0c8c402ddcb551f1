"""Per-neuron classification rules as plug-ins: a :class:`Rule` protocol and a registry.

Built-in rules, one module each: ``centroid`` (:mod:`.centroid`, the default), ``threshold``
(:mod:`.threshold`) and ``interval`` (:mod:`.interval`). Everything that takes ``rule=``
(:func:`sn_interp.find_super_neurons`, :class:`sn_interp.SuperNeurons` prediction, saving and
loading, :class:`sn_interp.EarlyExitClassifier`, the analyses' ``--rule``) looks the name up
here, so adding a rule is one module defining a :class:`Rule` subclass decorated with
:func:`register` (imported before use; the built-ins are imported below).

The protocol (:class:`Rule`, all arrays numpy, ``C`` classes, labels ``0 .. C-1``):

``name``, ``block``
    The ``rule=`` string, and units per dask chunk when scoring (memory per chunk).
``n_params(C) -> int``
    Rows of fitted parameters per neuron.
``fit(x[sample, neuron] float32, y[sample] int64, C) -> params[param, neuron] float64``
    The fit statistics of every column (finite values).
``predict(x[sample, neuron], params[param, neuron], C) -> classes[sample, neuron] int64``
    The decision of every column on new values.
``table_vars(params[param, neuron], C) -> {name: (dims, data, attrs)}`` and ``table_params(table)``
    How the params are stored as variables of the neuron table (``SuperNeurons.table``,
    saved to netCDF) and read back; the two are inverse.
``score_block(values[sample, neuron], labels[sample], folds[sample] | None, *, n_classes=None)``
    **The scoring kernel hook.** Scores and fits one block of columns and returns float64
    stats ``(2 + n_params, neuron)``: row 0 the score, row 1 a non-finite flag (1.0 where a
    column holds NaN/inf; the driver refuses those neurons), rows 2.. the params fitted on
    all samples (equal to ``fit``). ``folds=None`` scores in-sample accuracy
    (``score="probe"``); an int fold id per sample scores the mean held-out accuracy over
    the folds, each fold fitted on the other samples (``score="cv"``). ``n_classes``
    defaults to ``labels.max() + 1``. The base class implements it from ``fit`` and
    ``predict``; a rule may override it with a faster kernel that returns identical stats
    (``centroid`` runs a compiled numba kernel). The hook is a pure function of its inputs,
    so a caller may run it on permuted labels (a selection null) or any subset of columns.

:func:`sn_interp.probes.neurons.score_blocks` maps ``score_block`` over (all samples x
``block`` units) dask chunks of every (site, layer), so one rule works in memory, out of core
and on a ``dask.distributed`` cluster.

Example:
    >>> import numpy as np
    >>> from sn_interp.probes.rules import get_rule, rule_names
    >>> rule_names()
    ('centroid', 'threshold', 'interval')
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]], np.float32)
    >>> y = np.array([0, 0, 1, 1, 2, 2])
    >>> get_rule("interval").score_block(x, y)[0].tolist()  # row 0: the score
    [1.0]
    >>> get_rule("threshold").score_block(x, y)[0].tolist()  # one-vs-rest misses class 1
    [0.6666666666666666]
"""

from __future__ import annotations

from sn_interp.probes.rules.base import HEAD, Plan, Rule, get_rule, register, rule_names

# registration order is the order of rule_names()
# isort: off
from sn_interp.probes.rules import centroid  # noqa: F401, E402
from sn_interp.probes.rules import threshold  # noqa: F401, E402
from sn_interp.probes.rules import interval  # noqa: F401, E402
# isort: on

__all__ = ["HEAD", "Plan", "Rule", "get_rule", "register", "rule_names"]
