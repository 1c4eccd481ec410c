"""Strategy parameters: NNI ``RegularizedEvolution``'s names and defaults, plus evoq's own."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIMIZE_MODES = ("maximize", "minimize")
NNI_POPULATION, NNI_SAMPLE = 100, 25
MIN_POPULATION, MAX_POPULATION = 10, 50


def _budget(cycles: Any) -> int | None:
    return cycles if isinstance(cycles, int) and not isinstance(cycles, bool) and cycles >= 1 else None


def default_sizes(population: Any, sample: Any, cycles: Any) -> tuple[Any, Any]:
    """``(population_size, sample_size)`` with the unset ones (None) filled in.

    Both unset: ``P = clamp(round(cycles / 3), 10, 50)`` and ``S = P // 2``, one rule for every
    budget (the unset ``cycles`` of 20000 gives 50 and 25; before, budgets above 1000 jumped to
    NNI's 100 and 25). With NNI's P=100 the first 100 evaluations are pure random search. The
    rule was chosen on the seven tabular benchmarks of ``scripts/bench_search.py``: it lowers the
    regret at 100 evaluations on every task and ties at 300 and 1000 (measured when it was
    introduced), and at 3000 evaluations (and 1000), with re-evaluation (r = 6), P=50 S=25 against NNI's
    P=100 S=25 gives 0.82x the regret (geometric mean over the seven tasks, 100 seeds), no task
    significantly worse (every p >= 0.09). Not measured beyond 3000.
    Only P set: S = min(25, P // 2). Only S set: P = 100. Set values are never changed, so
    explicit parameters always give exactly the algorithm asked for; the log records the
    resolved values, so replay never depends on this rule.
    """
    if population is None and sample is None:
        budget = _budget(cycles)
        if budget is None:
            return NNI_POPULATION, NNI_SAMPLE  # an invalid cycles is reported by the Strategy
        p = max(MIN_POPULATION, min(MAX_POPULATION, round(budget / 3)))
        return p, p // 2
    if population is None:
        return NNI_POPULATION, sample
    if sample is None:
        return population, (
            max(1, min(NNI_SAMPLE, population // 2)) if isinstance(population, int) else NNI_SAMPLE
        )
    return population, sample


REEVAL_FROM, MAX_REEVAL = 200, 10
REEVAL_SCHEDULES = ("parallel", "serial")
REEVAL_SHARE = 0.5
"""With ``reeval_schedule = "parallel"``: the largest share of the runs in flight (the one being
proposed included) that may be re-evaluations; at least one always may."""


def default_reeval_count(cycles: Any) -> int:
    """The ``reeval_count`` of a budget when unset: 1 (off) below 200 evaluations, else
    ``min(10, 1 + cycles // 100)`` (3 at 200, 4 at 300, 10 from 900 on).

    Chosen on the seven tables of ``scripts/bench_search.py`` (100 seeds, geometric mean of the
    regret ratio over the tasks): any r > 1 loses at 100 and 150 evaluations (1.5-2.2x), breaks
    even at 200 (r = 4: 1.00x) and wins from 300 on, more with larger r (300: r = 4 0.57x,
    r = 6 0.55x of r = 1; 1000: r = 6 0.25x of r = 1, and r = 10 0.64x of r = 6 at 1000 and 3000).
    """
    budget = _budget(cycles)
    if budget is None or budget < REEVAL_FROM:
        return 1
    return min(MAX_REEVAL, 1 + budget // 100)


ON_FAILURE = ("ignore", "worst")
MUTATIONS = ("resample", "neighbour", "local")
"""How a mutated dimension gets its new value: ``resample`` draws from the whole range (NNI);
``neighbour`` moves a discrete ordered parameter (numeric choice, randint) to a nearby value and
resamples the others; ``local`` moves every ordered parameter (continuous ones too) to a nearby
value (see :mod:`evoq.space`)."""

DEFAULT_MUTATION = "neighbour"
LEGACY: dict[str, Any] = {"reeval_count": 1, "mutation": "resample", "reeval_schedule": "serial"}
"""What a key added after the first release means when a *logged* strategy lacks it: the
behaviour of the evoq that wrote the log. :meth:`Strategy.from_dict` fills these in, so an old
log re-derives its decisions whatever the defaults for new specs are."""


@dataclass(frozen=True, slots=True)
class Strategy:
    """Parameters of aging evolution.

    The first six are NNI's ``RegularizedEvolution`` parameters with NNI's defaults, except that
    an unset population and sample size are chosen from the budget (see :func:`default_sizes`).
    The rest are evoq's own; an unset ``reeval_count`` is chosen from the budget too
    (:func:`default_reeval_count`). :meth:`nni` gives the exact NNI 2.10 behaviour (P=100, S=25,
    child may equal its parent, no dedup, resampling mutation, no re-evaluation).

    Attributes:
        optimize_mode: ``"maximize"`` or ``"minimize"`` the trial metric.
        population_size: P, the number of most recent results kept (unset: see :func:`default_sizes`).
        sample_size: S, individuals drawn (without replacement) for each tournament; ``S < P``.
        cycles: results (completions, and failures under ``on_failure="worst"``) to collect.
        mutation_prob: probability that each dimension of the parent is resampled.
        on_failure: ``"ignore"`` drops a failed trial and proposes again; ``"worst"`` enters it
            in the population with the worst possible metric and counts it toward ``cycles``.
        dedup: never propose a config already completed or running (bounded retries).
        child_differs: a child that came out identical to its parent gets one uniformly chosen
            dimension set to a different value (Real et al. change exactly one thing).
        dedup_tries: proposals tried before giving up on finding an unseen config.
        max_failures: the experiment ends as failed after this many failures in a row.
        max_attempts: runs of one trial lost or preempted by the infrastructure before it is
            counted as failed.
        trial_timeout: seconds a trial may run (the RQ job timeout); None for RQ's default.
        prefetch: trials kept in flight beyond the live workers once the population is full.
        reeval_count: evaluations a config needs before it can replace the incumbent (unset:
            :func:`default_reeval_count`). 1 (off): the incumbent is the best single result.
            r > 1: the incumbent and every config whose result beats the incumbent's mean are
            re-evaluated (phase ``reeval``) up to ``r`` evaluations, a challenger only while its
            mean still beats the incumbent's; re-evaluations count toward ``cycles`` and never
            enter the population (see :mod:`evoq.reducer`).
        mutation: ``"neighbour"`` (default: a mutated numeric choice or randint moves to a nearby
            value, anything else is resampled), ``"local"`` (every ordered parameter, continuous
            ones too, moves to a nearby value; see :mod:`evoq.space`) or ``"resample"`` (NNI:
            drawn from its whole range).
        reeval_schedule: ``"parallel"`` (default): a race's re-evaluations may run at the same
            time, re-evaluations take at most :data:`REEVAL_SHARE` of the runs in flight (one
            always may) and never hold back the initial population; ``"serial"`` (logs written
            before this key): one re-evaluation per race at a time, no share, re-evaluations in
            flight count against the initial population. The two agree with one worker, where
            nothing is in flight when the next trial is proposed.
    """

    optimize_mode: str = "maximize"
    population_size: int = None  # type: ignore[assignment]  # resolved in __post_init__
    sample_size: int = None  # type: ignore[assignment]  # resolved in __post_init__
    cycles: int = 20000
    mutation_prob: float = 0.05
    on_failure: str = "ignore"
    dedup: bool = True
    child_differs: bool = True
    dedup_tries: int = 100
    max_failures: int = 100
    max_attempts: int = 3
    trial_timeout: float | None = None
    prefetch: int = 0
    reeval_count: int = None  # type: ignore[assignment]  # resolved in __post_init__
    mutation: str = None  # type: ignore[assignment]  # resolved in __post_init__
    reeval_schedule: str = "parallel"

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"strategy parameter {name!r}: {why}, got {getattr(self, name)!r}")

        p, s = default_sizes(self.population_size, self.sample_size, self.cycles)
        object.__setattr__(self, "population_size", p)
        object.__setattr__(self, "sample_size", s)
        if getattr(self, "reeval_count") is None:  # noqa: B009 (mypy: the field is typed int)
            object.__setattr__(self, "reeval_count", default_reeval_count(self.cycles))
        if getattr(self, "mutation") is None:  # noqa: B009
            object.__setattr__(self, "mutation", DEFAULT_MUTATION)

        for name in (
            "population_size",
            "sample_size",
            "cycles",
            "dedup_tries",
            "max_failures",
            "max_attempts",
            "reeval_count",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be a positive integer")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise bad("prefetch", "must be a non-negative integer")
        if self.optimize_mode not in OPTIMIZE_MODES:
            raise bad("optimize_mode", f"must be one of {OPTIMIZE_MODES}")
        if self.on_failure not in ON_FAILURE:
            raise bad("on_failure", f"must be one of {ON_FAILURE}")
        if self.reeval_schedule not in REEVAL_SCHEDULES:
            raise bad("reeval_schedule", f"must be one of {REEVAL_SCHEDULES}")
        if self.mutation not in MUTATIONS:
            raise bad("mutation", f"must be one of {MUTATIONS}")
        if self.sample_size >= self.population_size:
            raise ValueError(
                f"strategy parameter 'sample_size' must be smaller than population_size "
                f"({self.sample_size} >= {self.population_size})"
            )
        p = self.mutation_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise bad("mutation_prob", "must be a probability in [0, 1]")
        for name in ("dedup", "child_differs"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        t = self.trial_timeout
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0
        ):
            raise bad("trial_timeout", "must be a positive number of seconds or None")

    @classmethod
    def nni(cls, **overrides: Any) -> Strategy:
        """NNI 2.10's exact semantics and defaults: P=100, S=25, a child may equal its parent,
        duplicates are allowed, mutation resamples, no re-evaluation (the best single result)."""
        nni: dict[str, Any] = {
            "dedup": False,
            "child_differs": False,
            "population_size": NNI_POPULATION,
            "sample_size": NNI_SAMPLE,
            "reeval_count": 1,
            "mutation": "resample",
        }
        return cls(**{**nni, **overrides})

    @property
    def maximize(self) -> bool:
        """True when a larger metric is better."""
        return self.optimize_mode == "maximize"

    @property
    def worst(self) -> float:
        """The worst possible metric for ``optimize_mode`` (given to failures under ``worst``)."""
        return -math.inf if self.maximize else math.inf

    def to_dict(self) -> dict[str, Any]:
        """All parameters as a plain mapping (the form logged in ``ExperimentCreated``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Strategy:
        """Build from a *logged* mapping (``ExperimentCreated.strategy``).

        A key of :data:`LEGACY` that the mapping lacks gets its legacy value — the behaviour of
        the evoq that wrote a log without that key — so old logs replay and audit unchanged.
        Other missing keys default; unknown keys are an error naming the key.
        """
        return cls.from_spec({**LEGACY, **raw})

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> Strategy:
        """Build from a spec's ``[strategy]`` table: missing keys get today's defaults; unknown
        keys are an error naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in raw if k not in known]
        if unknown:
            raise ValueError(
                f"unknown strategy parameter(s): {', '.join(map(str, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**raw)
