"""The reducer: an experiment's state is a pure fold of its events.

``apply(state, event) -> state`` never mutates its inputs, and ``replay(events)`` is the fold of
``apply`` from the empty state. For speed both run on a :class:`StateBuilder` — a mutable
accumulator holding the same fields — which ``replay`` freezes once at the end; the property
tests check that ``replay`` equals the step-by-step fold of ``apply``.

Rules (NNI ``RegularizedEvolution`` semantics, plus evoq's handling of infrastructure faults):

* A log starts with ``ExperimentCreated``; a second one is ignored.
* ``TrialSubmitted`` with attempt 0 opens the next trial index (its config must belong to the
  space); with attempt ``a > 0`` it re-runs, with the same config, a trial whose attempt ``a - 1``
  was lost or preempted. Any other submission is a duplicate or foreign and changes nothing.
* The first terminal event (completed or failed) of a running ``(trial, attempt)`` wins; later
  ones, and events about runs that are not running, change nothing.
* A completion appends ``(trial, config, metric)`` to the population; when it then holds more
  than ``population_size`` individuals the *oldest* is pushed out. It counts toward ``cycles``.
  A completion whose metric is not finite counts as an ``invalid_metric`` failure.
* A failure of kind ``error``/``invalid_metric``/``timeout`` follows ``on_failure``: ``worst``
  appends the trial with the worst possible metric and counts it toward ``cycles``; ``ignore``
  drops it (the controller proposes a new trial for the slot). It counts toward the failures in a
  row that end the experiment at ``max_failures``.
* A ``lost`` or ``preempted`` run is queued to run again as the next attempt, without counting
  toward ``cycles`` or touching the population, until ``max_attempts`` runs were lost; the last
  one then counts as a failure like any other.
* A ``refused`` run (a worker would not or could not load the trial) is retried like a lost
  one; when the last allowed attempt of a trial is refused, the experiment fails at once with
  the worker's reason (refusals never count toward ``max_failures`` or enter the population).
* ``ExperimentExtended`` raises ``cycles`` (never lowers it); a finished experiment reopens and
  its failures in a row start again from 0.
* ``TrialProgressed`` (an intermediate result of a run in flight) is kept as that run's latest
  progress until it ends; it never enters the population.
* ``ExperimentFinished`` is recorded and ends every run still in flight (the controller cancels
  their jobs); events after it change nothing (but an extension).
* A record that cannot be decoded (garbled, too large, unknown type, newer schema, wrong
  shape) is *rejected*: skipped, counted and kept with its position and reason. The same bytes
  are always rejected, so every fold of a log makes the same decisions.

Re-evaluation (``reeval_count`` r > 1; see :class:`~evoq.strategy.Strategy`): the first result of
the experiment makes its trial the incumbent and opens a *race* for it (its confirmation); later,
a result that beats the incumbent's mean opens a race for its trial (a challenger). A ``TrialSubmitted`` of phase ``reeval`` (a new trial index, the same config, ``parent`` =
the raced trial) runs that config again. Its result counts toward ``cycles`` (an evaluation spent
is an evaluation spent) but never enters the population: it updates the raced trial's mean, and
that trial's population member, if it is still there, takes the mean as its metric (aging order
unchanged, nobody pushed out; a config is one individual however often it is evaluated). The
incumbent's own re-evaluations update its mean and count. A challenger's race ends when its
r - 1 re-evaluations ended, and its trial then replaces the incumbent if its mean still beats the
incumbent's; a challenger whose mean falls behind is dropped. A failed re-evaluation follows
``on_failure``: ``worst`` adds the worst metric to the mean (and counts toward ``cycles``),
``ignore`` adds nothing. With r = 1 there are no races: a result that beats the incumbent
replaces it, so the incumbent is the first best single result, as before.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import isfinite
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from .codec import _FAST_CHECKS, TAGS, CodecError, check_record, check_shape, to_record
from .errors import EvoqError
from .events import (
    INFRA_FAILURES,
    Event,
    ExperimentCreated,
    ExperimentExtended,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialProgressed,
    TrialStarted,
    TrialSubmitted,
)
from .space import Config, ConfigKey, SearchSpace
from .strategy import Strategy


class InvalidLogError(EvoqError, ValueError):
    """The events do not form a valid experiment log (e.g. no ``ExperimentCreated`` first)."""


class Individual(NamedTuple):
    """A member of the population: a trial with its config and metric."""

    trial: int
    config: Mapping[str, Any]
    metric: float


class Rejection(NamedTuple):
    """A record the fold skipped: where it is in its log and why."""

    position: Any
    reason: str


MAX_REJECTIONS_KEPT = 100
"""Rejected records kept with their reason (all are counted)."""


class FailureNote(NamedTuple):
    """A failed run as the log tells it (the state keeps the most recent ones)."""

    trial: int
    attempt: int
    kind: str
    worker: str
    message: str
    at: float


RECENT_FAILURES = 20
"""Failed runs the state keeps with their message (all are counted by kind)."""


class Race(NamedTuple):
    """A trial being re-evaluated: its evaluations so far and its re-evaluation runs."""

    trial: int
    config: Mapping[str, Any]
    n: int
    """Evaluations with a metric (the trial's own and its completed re-evaluations)."""
    total: float
    """Their sum (the mean is ``total / n``)."""
    tries: int
    """Re-evaluations submitted."""
    pending: int
    """Re-evaluations submitted and not ended."""

    @property
    def mean(self) -> float:
        """The mean metric of the evaluations so far."""
        return self.total / self.n


class Incumbent(NamedTuple):
    """The config evoq reports as best (see the module docstring): a trial and its mean."""

    trial: int
    config: Mapping[str, Any]
    metric: float
    """The mean of its evaluations."""
    evaluations: int


class Run(NamedTuple):
    """A trial run that was submitted and has not ended (or awaits its next attempt)."""

    trial: int
    attempt: int
    config: Mapping[str, Any]
    parent: int | None
    phase: str
    worker: str | None = None
    submitted_at: float = 0.0
    started_at: float | None = None


class StateView(Protocol):
    """What proposals and status need to read; both :class:`State` and the builder provide it."""

    @property
    def experiment(self) -> ExperimentCreated | None: ...
    @property
    def strategy(self) -> Strategy | None: ...
    @property
    def space(self) -> SearchSpace | None: ...
    @property
    def population(self) -> Sequence[Individual]: ...
    @property
    def running(self) -> Mapping[int, Run]: ...
    @property
    def retry(self) -> Mapping[int, Run]: ...
    @property
    def seen(self) -> Mapping[ConfigKey, int]: ...
    @property
    def next_trial(self) -> int: ...
    @property
    def results(self) -> int: ...
    @property
    def failures_in_a_row(self) -> int: ...
    @property
    def finished(self) -> ExperimentFinished | None: ...
    @property
    def halted(self) -> str | None: ...
    @property
    def race(self) -> Mapping[int, Race]: ...
    @property
    def incumbent(self) -> Incumbent | None: ...


@dataclass(frozen=True)
class State:
    """An experiment's state, rebuilt from its log. Immutable.

    Attributes:
        experiment: the ``ExperimentCreated`` record (None before it).
        strategy, space: parsed from it.
        population: the aging population, oldest first (at most ``population_size``).
        running: runs submitted and not ended, by trial index.
        retry: runs lost or preempted, awaiting their next attempt, by trial index.
        seen: configs (by :meth:`SearchSpace.key`) completed, counted as failed under ``worst``,
            running or awaiting a retry, with their multiplicity (used for dedup).
        next_trial: the index the next new trial gets.
        results: results counted toward ``cycles`` (completions and ``worst`` failures).
        completed: trials that completed with a finite metric.
        failed: failed runs by kind (``lost`` and ``preempted`` runs included).
        failures_in_a_row: counted failures since the last completion.
        best: the best single result ever seen (the population forgets; this does not): a trial
            with its config and that one metric (a re-evaluation's result counts).
        incumbent: the config evoq reports as best: a trial with the mean of its evaluations and
            their number (the winner of the last race; see the module docstring).
        race: trials being re-evaluated, by trial index.
        reevaluated: results of re-evaluations (included in ``results`` and ``completed``).
        finished: the ``ExperimentFinished`` record, once written.
        halted: why the experiment cannot go on although no failure limit was reached (every
            attempt of a trial was refused by the workers), or None.
        events: number of records folded in (rejected ones included).
        rejected: how many records were rejected.
        rejections: the first :data:`MAX_REJECTIONS_KEPT` of them, with position and reason.
        recent_failures: the last :data:`RECENT_FAILURES` failed runs (any kind), oldest first.
        progress: the latest intermediate result ``(step, value, count)`` of each run in flight,
            by trial index.
    """

    experiment: ExperimentCreated | None = None
    strategy: Strategy | None = None
    space: SearchSpace | None = None
    population: tuple[Individual, ...] = ()
    running: Mapping[int, Run] = field(default_factory=lambda: MappingProxyType({}))
    retry: Mapping[int, Run] = field(default_factory=lambda: MappingProxyType({}))
    seen: Mapping[ConfigKey, int] = field(default_factory=lambda: MappingProxyType({}))
    next_trial: int = 0
    results: int = 0
    completed: int = 0
    failed: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    failures_in_a_row: int = 0
    best: Individual | None = None
    finished: ExperimentFinished | None = None
    halted: str | None = None
    events: int = 0
    rejected: int = 0
    rejections: tuple[Rejection, ...] = ()
    recent_failures: tuple[FailureNote, ...] = ()
    progress: Mapping[int, tuple[int, float, int]] = field(default_factory=lambda: MappingProxyType({}))
    incumbent: Incumbent | None = None
    race: Mapping[int, Race] = field(default_factory=lambda: MappingProxyType({}))
    reevaluated: int = 0

    @property
    def status(self) -> str:
        """``running``, or the end status: logged, or due (``completed``/``failed``) from counts."""
        return status_of(self)

    @property
    def failed_total(self) -> int:
        """All failed runs, every kind."""
        return sum(self.failed.values())


def status_of(s: StateView) -> str:
    """The experiment's status, decided from state alone."""
    if s.finished is not None:
        return s.finished.status
    st = s.strategy
    if st is None:
        return "empty"
    if s.results >= st.cycles:
        return "completed"
    if s.failures_in_a_row >= st.max_failures or s.halted is not None:
        return "failed"
    return "running"


def finish_reason(s: StateView) -> str:
    """A human-readable reason for the status :func:`status_of` gives."""
    st = s.strategy
    if s.finished is not None:
        return s.finished.reason
    if st is None:
        return "no experiment_created record"
    if s.results >= st.cycles:
        return f"{s.results} results reached cycles={st.cycles}"
    if s.failures_in_a_row >= st.max_failures:
        return f"{s.failures_in_a_row} trials failed in a row (max_failures={st.max_failures})"
    if s.halted is not None:
        return s.halted
    return ""


class StateBuilder:
    """A mutable accumulator of state: fold events in with :meth:`add`, freeze with :meth:`freeze`.

    The controller keeps one and folds new events into it as they arrive; it satisfies
    :class:`StateView`, so proposals can read it without a copy.
    """

    __slots__ = (
        "_key",
        "_maximize",
        "_pop_size",
        "best",
        "completed",
        "events",
        "experiment",
        "failed",
        "failures_in_a_row",
        "finished",
        "halted",
        "incumbent",
        "last_rejection",
        "next_trial",
        "population",
        "progress",
        "race",
        "recent_failures",
        "reevaluated",
        "rejected",
        "rejections",
        "results",
        "retry",
        "running",
        "seen",
        "space",
        "strategy",
    )  # fmt: skip

    def __init__(self, state: State | None = None) -> None:
        s = state if state is not None else State()
        self.experiment = s.experiment
        self.strategy = s.strategy
        self.space = s.space
        self.population: deque[Individual] = deque(s.population)
        self.running: dict[int, Run] = dict(s.running)
        self.retry: dict[int, Run] = dict(s.retry)
        self.seen: dict[ConfigKey, int] = dict(s.seen)
        self.next_trial = s.next_trial
        self.results = s.results
        self.completed = s.completed
        self.failed: dict[str, int] = dict(s.failed)
        self.failures_in_a_row = s.failures_in_a_row
        self.best = s.best
        self.finished = s.finished
        self.halted = s.halted
        self.events = s.events
        self.rejected = s.rejected
        self.rejections: list[Rejection] = list(s.rejections)
        self.last_rejection: Rejection | None = s.rejections[-1] if s.rejections else None
        self.recent_failures: deque[FailureNote] = deque(s.recent_failures, maxlen=RECENT_FAILURES)
        self.progress: dict[int, tuple[int, float, int]] = dict(s.progress)
        self.incumbent = s.incumbent
        self.race: dict[int, Race] = dict(s.race)
        self.reevaluated = s.reevaluated
        self._pop_size = s.strategy.population_size if s.strategy else 0
        self._key = s.space.key if s.space else None
        self._maximize = s.strategy.maximize if s.strategy else True

    def add(self, event: Event) -> None:
        """Fold one event in."""
        rec = check_record(to_record(event))
        self.events += 1
        _HANDLERS[rec[0]](self, rec)

    def add_judged(self, event: Event) -> bool:
        """Fold one event in; True when it took effect for its trial run: an accepted submission,
        or the terminal event that counted. Anything else (other event types, duplicates, late or
        foreign events) gives False."""
        if not isinstance(event, TrialSubmitted | TrialCompleted | TrialFailed):
            self.add(event)
            return False
        before = self.running.get(event.trial)
        self.add(event)
        after = self.running.get(event.trial)
        if isinstance(event, TrialSubmitted):
            return after is not None and after is not before
        return before is not None and before.attempt == event.attempt and after is None

    def add_all(self, events: Iterable[Event]) -> None:
        """Fold events in, in order."""
        for event in events:
            self.add(event)

    def add_records(self, records: Iterable[tuple[Any, Any]]) -> None:
        """Fold in unpacked records ``(position, record tuple)`` — the fast replay path.

        Each record is validated by :func:`~evoq.codec.check_record` without building an event
        object; one that fails is rejected (:meth:`reject`), and the fold goes on.
        """
        table, handlers, check = _CHECKED_HANDLERS, _HANDLERS, check_record
        n = 0
        try:
            for pos, rec in records:
                n += 1
                try:
                    fast, handler = table[rec[0]]
                except (KeyError, TypeError, IndexError):
                    fast = None
                if fast is None or not fast(rec):
                    try:
                        rec = check(rec, offset=pos)
                    except CodecError as exc:
                        self.reject(pos, exc.reason)
                        continue
                    handler = handlers[rec[0]]
                try:
                    handler(self, rec)
                except InvalidLogError as exc:  # e.g. a trial event before any experiment_created
                    self.reject(pos, str(exc))
        finally:
            self.events += n

    def reject(self, position: Any, reason: str) -> None:
        """Count a record that cannot be folded (and keep the first ones with their reason)."""
        self.rejected += 1
        self.last_rejection = Rejection(position, reason)
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append(self.last_rejection)

    def freeze(self) -> State:
        """An immutable snapshot of the current state."""
        return State(
            experiment=self.experiment,
            strategy=self.strategy,
            space=self.space,
            population=tuple(self.population),
            running=MappingProxyType(dict(self.running)),
            retry=MappingProxyType(dict(self.retry)),
            seen=MappingProxyType(dict(self.seen)),
            next_trial=self.next_trial,
            results=self.results,
            completed=self.completed,
            failed=MappingProxyType(dict(self.failed)),
            failures_in_a_row=self.failures_in_a_row,
            best=self.best,
            finished=self.finished,
            halted=self.halted,
            events=self.events,
            rejected=self.rejected,
            rejections=tuple(self.rejections),
            recent_failures=tuple(self.recent_failures),
            progress=MappingProxyType(dict(self.progress)),
            incumbent=self.incumbent,
            race=MappingProxyType(dict(self.race)),
            reevaluated=self.reevaluated,
        )

    @property
    def status(self) -> str:
        """See :func:`status_of`."""
        return status_of(self)

    # -- helpers used by the mutators ------------------------------------------------------
    def key(self, config: Mapping[str, Any]) -> ConfigKey:
        assert self._key is not None
        return self._key(config)

    def unsee(self, config: Mapping[str, Any]) -> None:
        k = self.key(config)
        n = self.seen.get(k, 0)
        if n <= 1:
            self.seen.pop(k, None)
        else:
            self.seen[k] = n - 1

    def enter(self, individual: Individual) -> None:
        pop = self.population
        pop.append(individual)
        if len(pop) > self._pop_size:
            pop.popleft()
        self.results += 1

    def beats(self, metric: float, incumbent: Incumbent | None) -> bool:
        """Whether ``metric`` is finite and strictly better than the incumbent's mean (or there is
        none)."""
        if not isfinite(metric):
            return False
        if incumbent is None:
            return True
        return metric > incumbent.metric if self._maximize else metric < incumbent.metric

    def first_result(self, trial: int, config: Mapping[str, Any], metric: float) -> None:
        """A trial's own result. The first one becomes the incumbent; later ones that beat the
        incumbent's mean replace it at once without re-evaluation, else open a race."""
        st = self.strategy
        assert st is not None
        inc = self.incumbent
        if not self.beats(metric, inc):
            return
        if inc is None or st.reeval_count <= 1:
            self.incumbent = Incumbent(trial, config, metric, 1)
        if st.reeval_count > 1:
            self.race[trial] = Race(trial, config, 1, metric, 0, 0)

    def reeval_ended(self, parent: int | None, metric: float | None) -> None:
        """A re-evaluation of ``parent`` ended with ``metric`` (None: no metric); settle its race."""
        race = self.race.get(parent) if parent is not None else None
        if race is None:
            return
        if metric is not None:
            race = race._replace(n=race.n + 1, total=race.total + metric, pending=race.pending - 1)
            pop = self.population
            for i, ind in enumerate(pop):
                if ind.trial == race.trial:
                    pop[i] = Individual(ind.trial, ind.config, race.mean)
                    break
        else:
            race = race._replace(pending=race.pending - 1)
        self.race[race.trial] = race
        st = self.strategy
        assert st is not None
        done = not race.pending and race.tries + 1 >= st.reeval_count
        inc = self.incumbent
        if inc is not None and inc.trial == race.trial:  # the incumbent being confirmed
            self.incumbent = Incumbent(race.trial, race.config, race.mean, race.n)
            if done:
                del self.race[race.trial]
            return
        if race.pending:
            return
        if not self.beats(race.mean, inc):
            del self.race[race.trial]  # fell behind: dropped
        elif done:  # a challenger's race won: it replaces the incumbent
            del self.race[race.trial]
            if inc is not None:
                self.race.pop(inc.trial, None)
            self.incumbent = new = Incumbent(race.trial, race.config, race.mean, race.n)
            for t, other in list(self.race.items()):
                if not other.pending and not self.beats(other.mean, new):
                    del self.race[t]


def _live(b: StateBuilder) -> bool:
    if b.experiment is None:
        raise InvalidLogError("no experiment_created record before this one")
    return b.finished is None


# Handlers take a validated record tuple (tag, version, *fields), fields in dataclass order.


def _run_of(b: StateBuilder, r: tuple[Any, ...]) -> Run | None:
    """The run a trial event ``(tag, v, trial, attempt, ...)`` names, if it is the one running."""
    if b.finished is not None or b.experiment is None:
        _live(b)
        return None
    run = b.running.get(r[2])
    return run if run is not None and run[1] == r[3] else None


def _on_created(b: StateBuilder, r: tuple[Any, ...]) -> None:
    if b.experiment is not None:
        return
    e = ExperimentCreated(*r[2:])
    try:
        check_shape(r)
        strategy = Strategy.from_dict(e.strategy)
        space = SearchSpace.parse(e.space)
    except CodecError as exc:
        raise InvalidLogError(exc.reason) from None
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise InvalidLogError(f"experiment_created: {type(exc).__name__}: {str(exc)[:200]}") from None
    b.experiment, b.strategy, b.space = e, strategy, space
    b._pop_size, b._key, b._maximize = strategy.population_size, space.key, strategy.maximize


def _on_submitted(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, trial, attempt, config, parent, phase, note, at)
    if b.finished is not None or b.experiment is None:
        _live(b)
        return
    i, attempt, config = r[2], r[3], r[4]
    # (no shape check here: a config is kept only when the space, whose shape was checked with
    # experiment_created, accepts it, or when it equals one that was; readers that keep every
    # decoded record check it in codec.check_record)
    if attempt == 0:
        if i != b.next_trial or not b.space.contains(config):  # type: ignore[union-attr]
            return
        b.next_trial = i + 1
    else:
        prev = b.retry.get(i)
        if prev is None or prev[1] != attempt - 1 or prev[2] != config:
            return
        del b.retry[i]
        b.unsee(prev[2])
    b.running[i] = _new(Run, (i, attempt, config, r[5], r[6], None, r[8], None))
    k = b._key(config)  # type: ignore[misc]
    seen = b.seen
    seen[k] = seen.get(k, 0) + 1
    if attempt == 0 and r[6] == "reeval":
        race = b.race.get(r[5])
        if race is not None:
            b.race[race.trial] = race._replace(tries=race.tries + 1, pending=race.pending + 1)


def _on_started(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, trial, attempt, worker, at)
    run = _run_of(b, r)
    if run is None or run[5] is not None:
        return
    b.running[r[2]] = _new(Run, (*run[:5], r[4], run[6], r[5]))


def _on_completed(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, trial, attempt, metric, duration, worker, at)
    run = _run_of(b, r)
    if run is None:
        return
    metric = r[4]
    if not isfinite(metric):
        message = f"returned a non-finite metric ({metric})"
        b.recent_failures.append(_new(FailureNote, (r[2], r[3], "invalid_metric", r[6], message, r[7])))
        _count_failure(b, run, "invalid_metric", message)
        return
    del b.running[r[2]]
    b.progress.pop(r[2], None)
    ind = _new(Individual, (run[0], run[2], metric))
    if run[4] == "reeval":
        b.results += 1
        b.reevaluated += 1
        b.reeval_ended(run[3], metric)
    else:
        b.enter(ind)
        b.first_result(run[0], run[2], metric)
    b.completed += 1
    b.failures_in_a_row = 0
    best = b.best
    if best is None or (metric > best[2] if b._maximize else metric < best[2]):
        b.best = ind


def _count_failure(b: StateBuilder, run: Run, kind: str, message: str = "") -> None:
    del b.running[run.trial]
    b.progress.pop(run.trial, None)
    b.failed[kind] = b.failed.get(kind, 0) + 1
    st = b.strategy
    assert st is not None
    if kind in INFRA_FAILURES and run.attempt + 1 < st.max_attempts:
        b.retry[run.trial] = run
        return
    if kind == "refused":
        b.unsee(run.config)
        first = message.strip().splitlines()[0][:300] if message.strip() else "no reason given"
        b.halted = f"trial {run.trial} was refused by the workers {st.max_attempts} times; last: {first}"
        return
    b.failures_in_a_row += 1
    if run.phase == "reeval":
        if st.on_failure == "worst":
            b.results += 1
            b.reevaluated += 1
        else:
            b.unsee(run.config)
        b.reeval_ended(run.parent, st.worst if st.on_failure == "worst" else None)
    elif st.on_failure == "worst":
        b.enter(Individual(run.trial, run.config, st.worst))
    else:
        b.unsee(run.config)


def _on_failed(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, trial, attempt, kind, message, worker, at)
    run = _run_of(b, r)
    if run is None:
        return
    b.recent_failures.append(_new(FailureNote, (r[2], r[3], r[4], r[6], r[5], r[7])))
    _count_failure(b, run, r[4], r[5])


def _on_finished(b: StateBuilder, r: tuple[Any, ...]) -> None:
    if _live(b):
        b.finished = ExperimentFinished(*r[2:])
        # the controller cancels what was in flight (late reports are ignored); a cancelled
        # re-evaluation ends its race's wait without a metric
        for run in [*b.running.values(), *b.retry.values()]:
            if run.phase == "reeval":
                b.reeval_ended(run.parent, None)
        b.running.clear()
        b.retry.clear()
        b.progress.clear()


def _on_extended(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, cycles, reason, at)
    if b.experiment is None:
        _live(b)
    st = b.strategy
    assert st is not None
    if r[2] <= st.cycles:
        return
    b.strategy = dataclasses.replace(st, cycles=r[2])
    b.finished = None
    b.halted = None
    b.failures_in_a_row = 0


def _on_progressed(b: StateBuilder, r: tuple[Any, ...]) -> None:
    # (tag, v, trial, attempt, step, value, at)
    run = _run_of(b, r)
    if run is None:
        return
    previous = b.progress.get(r[2])
    b.progress[r[2]] = (r[4], r[5], previous[2] + 1 if previous else 1)


_HANDLERS: dict[str, Callable[[StateBuilder, tuple[Any, ...]], None]] = {
    TAGS[ExperimentCreated]: _on_created,
    TAGS[TrialSubmitted]: _on_submitted,
    TAGS[TrialStarted]: _on_started,
    TAGS[TrialCompleted]: _on_completed,
    TAGS[TrialFailed]: _on_failed,
    TAGS[ExperimentFinished]: _on_finished,
    TAGS[ExperimentExtended]: _on_extended,
    TAGS[TrialProgressed]: _on_progressed,
}
_CHECKED_HANDLERS = {tag: (_FAST_CHECKS[tag], h) for tag, h in _HANDLERS.items()}
_new = tuple.__new__


def apply(state: State, event: Event) -> State:
    """The state after ``event``; ``state`` is not changed."""
    b = StateBuilder(state)
    b.add(event)
    return b.freeze()


def replay(events: Iterable[Event], state: State | None = None) -> State:
    """Fold ``events`` (onto ``state``, or the empty state) and return the result."""
    b = StateBuilder(state)
    b.add_all(events)
    return b.freeze()


def config_of(individual: Individual | Run) -> Config:
    """A fresh mutable copy of the config of a population member or run."""
    return dict(individual.config)
