"""Events: frozen dataclasses with past-tense names, one per fact of an experiment.

An experiment's whole state is a fold of these over its log (see :mod:`evoq.reducer`). Trials
are identified by their *index* (0, 1, 2, ... in order of proposal); a trial lost or preempted by
the infrastructure is run again under the same index with the next *attempt* number, and every
event about one run names both.

``at`` is the wall-clock time (Unix seconds) at which the appender created the event. The core
never reads the clock: the shell fills ``at`` in, and nothing in the reducer or the proposals
depends on it.

Configs and the search space inside events are plain mappings. Treat them as read-only: the
reducer never mutates them and shares them between states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

PHASES = ("init", "evolve", "reeval")
"""Why a trial was proposed: the initial random population, a mutated tournament winner, or a
re-evaluation of an earlier trial's config (``parent``) for a robust incumbent (schema 2)."""
FAILURE_KINDS = ("error", "invalid_metric", "timeout", "lost", "preempted", "refused")
"""Why a trial failed. ``lost``, ``preempted`` and ``refused`` are the infrastructure's fault: the
trial is run again as a new attempt (``refused``, schema 2: a worker would not or could not load
the trial — its allowlist, a missing module). The others follow the strategy's ``on_failure``."""
INFRA_FAILURES = frozenset({"lost", "preempted", "refused"})
FINISH_STATUSES = ("completed", "failed", "stopped")


@dataclass(frozen=True, slots=True)
class ExperimentCreated:
    """The first record of every log: what is searched, how, and with which seed."""

    name: str
    space: dict[str, Any]
    strategy: dict[str, Any]
    seed: int
    trial: str
    evoq_version: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialSubmitted:
    """A trial (or a new attempt of one) was proposed and handed to the queue."""

    trial: int
    attempt: int
    config: dict[str, Any]
    parent: int | None
    phase: str
    note: str = ""
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialStarted:
    """A worker began running a trial."""

    trial: int
    attempt: int
    worker: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialCompleted:
    """A trial returned a metric."""

    trial: int
    attempt: int
    metric: float
    duration: float
    worker: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialFailed:
    """A trial ended without a usable metric; ``kind`` is one of :data:`FAILURE_KINDS`."""

    trial: int
    attempt: int
    kind: str
    message: str
    worker: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class ExperimentFinished:
    """The experiment ended; ``status`` is one of :data:`FINISH_STATUSES`."""

    status: str
    reason: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class ExperimentExtended:
    """The budget was raised to ``cycles`` results (schema 2). A finished experiment is reopened
    and goes on; parameters resolved at creation (population and sample size) never change."""

    cycles: int
    reason: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class TrialProgressed:
    """A running trial reported an intermediate result (schema 2): ``value`` at ``step``.

    Intermediate results are shown as learning curves; they never enter the population."""

    trial: int
    attempt: int
    step: int
    value: float
    at: float = 0.0


Event: TypeAlias = (
    ExperimentCreated
    | TrialSubmitted
    | TrialStarted
    | TrialCompleted
    | TrialFailed
    | ExperimentFinished
    | ExperimentExtended
    | TrialProgressed
)
EVENT_TYPES: tuple[type[Event], ...] = (
    ExperimentCreated,
    TrialSubmitted,
    TrialStarted,
    TrialCompleted,
    TrialFailed,
    ExperimentFinished,
    ExperimentExtended,
    TrialProgressed,
)
TERMINAL_TYPES = (TrialCompleted, TrialFailed)
