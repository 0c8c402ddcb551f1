"""The :class:`Rule` protocol, the registry, and the fold plan every scoring kernel reads.

See :mod:`sn_interp.probes.rules` for the contract a rule fulfils.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
from jaxtyping import Float, Int

if TYPE_CHECKING:
    import xarray as xr

#: One neuron-table variable as ``xr.Dataset`` takes it: (dims, data, attrs).
TableVar = tuple[str | tuple[str, ...], np.ndarray, dict[str, str]]

#: Rows of a block's stats array before the fitted params: the score and the non-finite flag.
HEAD = 2


def _as_labels(labels: object) -> Int[np.ndarray, " sample"]:
    return np.asarray(labels, np.int64)


@dataclass(frozen=True)
class Plan:
    """What a block kernel needs: labels, class count, fold id per sample, the row layout.

    Attributes:
        y: int64 class index of each sample (sample,).
        n_classes: number of classes (labels are ``0 .. n_classes - 1``).
        rule: registered rule name.
        score: ``"probe"`` or ``"cv"``.
        fold: int64 fold id of each sample (all 0 for ``score="probe"``).
        n_folds: number of folds (1 for ``score="probe"``).
    """

    y: np.ndarray
    n_classes: int
    rule: str
    score: str
    fold: np.ndarray
    n_folds: int

    @classmethod
    def of(cls, labels: Int[np.ndarray, " sample"], folds: Int[np.ndarray, " sample"] | None,
           n_classes: int | None, rule: str) -> Plan:
        """The plan of a :meth:`Rule.score_block` call (``folds=None``: in-sample score)."""
        y = _as_labels(labels)
        c = int(y.max()) + 1 if n_classes is None else int(n_classes)
        if folds is None:
            return cls(y, c, rule, "probe", np.zeros(len(y), np.int64), 1)
        fold = np.asarray(folds, np.int64)
        return cls(y, c, rule, "cv", fold, int(fold.max()) + 1)

    @property
    def folds(self) -> Int[np.ndarray, " sample"] | None:
        """Fold ids for :meth:`Rule.score_block`: None for ``score="probe"``."""
        return self.fold if self.score == "cv" else None

    def seg_order(self) -> tuple[Int[np.ndarray, " sample"], Int[np.ndarray, " sample"]]:
        """Rows sorted by (fold, class) and the (fold*C + class) segment of each sorted row."""
        seg = self.fold * self.n_classes + self.y
        perm = np.argsort(seg, kind="stable")
        return perm, seg[perm]

    @cached_property
    def layout(self) -> Layout:
        """The (fold, class)-sorted row layout, computed once per plan."""
        perm, seg = self.seg_order()
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        n_seg = self.n_folds * self.n_classes
        starts = np.searchsorted(seg, np.arange(n_seg + 1))
        identity = bool(np.array_equal(perm, np.arange(len(perm))))
        return Layout(inv, starts, np.bincount(seg, minlength=n_seg), identity)

    @property
    def n_stats(self) -> int:
        """Rows of a block's stats array: score, non-finite flag, the rule's params."""
        return HEAD + get_rule(self.rule).n_params(self.n_classes)


@dataclass(frozen=True)
class Layout:
    """Rows of a block in (fold, class) order."""

    inv: np.ndarray  # sorted position of each original row
    starts: np.ndarray  # first sorted row of each (fold, class) segment, plus the end
    counts: np.ndarray  # rows per segment
    identity: bool  # rows are already sorted


class Rule(ABC):
    """A per-neuron classification rule: fit, predict, table variables, scoring kernel.

    Subclasses set :attr:`name` (the ``rule=`` string) and :attr:`block` (units per dask
    chunk) and implement the five abstract methods; :meth:`score_block` has a generic
    implementation from :meth:`fit` and :meth:`predict` that a rule may replace by a faster
    kernel with identical results. Register a rule with :func:`register`.
    """

    name: ClassVar[str]
    block: ClassVar[int] = 2048

    @abstractmethod
    def n_params(self, n_classes: int) -> int:
        """Rows of fitted parameters per neuron for ``n_classes`` classes."""

    @abstractmethod
    def fit(self, x: Float[np.ndarray, "sample neuron"], y: Int[np.ndarray, " sample"],
            n_classes: int) -> Float[np.ndarray, "param neuron"]:
        """Fit every column of float32 ``x`` (finite) on labels ``y``: float64 params."""

    @abstractmethod
    def predict(self, x: Float[np.ndarray, "sample neuron"],
                params: Float[np.ndarray, "param neuron"],
                n_classes: int) -> Int[np.ndarray, "sample neuron"]:
        """int64 class of every value of float32 ``x`` under each column's params."""

    @abstractmethod
    def table_vars(self, params: Float[np.ndarray, "param neuron"],
                   n_classes: int) -> dict[str, TableVar]:
        """The neuron table's variables holding ``params``: name -> (dims, data, attrs)."""

    @abstractmethod
    def table_params(self, table: xr.Dataset) -> Float[np.ndarray, "param neuron"]:
        """The params array back from a neuron table (an ``xr.Dataset`` over ``neuron``)."""

    def score_block(self, values: Float[np.ndarray, "sample neuron"],
                    labels: Int[np.ndarray, " sample"],
                    folds: Int[np.ndarray, " sample"] | None = None, *,
                    n_classes: int | None = None) -> Float[np.ndarray, "stat neuron"]:
        """Score and fit every column of one block: the kernel hook (see the package doc).

        Returns float64 stats ``(2 + n_params, neuron)``: row 0 the score (accuracy in
        sample, or the mean held-out fold accuracy when ``folds`` is given), row 1 1.0 where
        the column holds a non-finite value (its params are then meaningless), rows 2.. the
        params fitted on all samples (as :meth:`fit`).
        """
        x = np.asarray(values, np.float32)
        y = _as_labels(labels)
        c = int(y.max()) + 1 if n_classes is None else int(n_classes)
        out = np.empty((HEAD + self.n_params(c), x.shape[1]))
        bad = ~np.isfinite(x).all(0)
        out[1] = bad
        x = np.where(bad, 0, x)
        params = self.fit(x, y, c)
        out[HEAD:] = params
        if folds is None:
            out[0] = (self.predict(x, params, c) == y[:, None]).mean(0)
            return out
        fold = np.asarray(folds, np.int64)
        accs = []
        for f in range(int(fold.max()) + 1):
            te = fold == f
            pf = self.fit(x[~te], y[~te], c)
            accs.append((self.predict(x[te], pf, c) == y[te, None]).mean(0))
        out[0] = np.mean(accs, axis=0)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_REGISTRY: dict[str, Rule] = {}
R = TypeVar("R", bound=Rule)


def register(cls: type[R]) -> type[R]:
    """Class decorator: make ``rule=cls.name`` available everywhere a rule is accepted.

    Example:
        >>> from sn_interp.probes.rules import get_rule
        >>> get_rule("interval").name
        'interval'
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute name (the rule= string)")
    if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
        raise ValueError(f"a rule named {name!r} is already registered "
                         f"({type(_REGISTRY[name]).__name__}); pick another name")
    _REGISTRY[name] = cls()
    return cls


def rule_names() -> tuple[str, ...]:
    """Names of the registered rules, in registration order."""
    return tuple(_REGISTRY)


def get_rule(name: str) -> Rule:
    """The registered rule called ``name``; a clear error naming the choices otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown rule {name!r}; choose one of {rule_names()}") from None
