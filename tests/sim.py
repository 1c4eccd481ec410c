"""A tiny driver that produces realistic, messy event sequences for the core's tests.

It runs evoq's own proposals against a fake objective, with random scheduling decisions taken
from the ``random.Random`` it is given: trials start and end out of order, fail in every way,
get lost and retried, and terminal events are sometimes delivered twice.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from evoq.events import (
    FAILURE_KINDS,
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
from evoq.proposal import propose
from evoq.reducer import StateBuilder, finish_reason
from evoq.space import SearchSpace
from evoq.strategy import Strategy

SPACE = {
    "op": ["conv", "pool", "skip", "none"],
    "width": [16, 32, 64],
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "depth": {"_type": "randint", "_value": [1, 4]},
}


def created(strategy: Strategy, space: Any = SPACE, seed: int = 0, name: str = "t") -> ExperimentCreated:
    return ExperimentCreated(
        name, SearchSpace.parse(space).spec(), strategy.to_dict(), seed, "m:f", "test", 0.0
    )


def objective(config: dict[str, Any]) -> float:
    return float(sum(zlib.crc32(repr(v).encode()) % 97 for v in config.values()))


def simulate(
    rng: random.Random,
    strategy: Strategy,
    space: Any = SPACE,
    *,
    seed: int = 0,
    steps: int = 200,
    workers: int = 4,
    fail_rate: float = 0.2,
    duplicate_rate: float = 0.1,
    kinds: tuple[str, ...] = FAILURE_KINDS,
    progress_rate: float = 0.0,
    extend_to: int | None = None,
) -> list[Event]:
    """Run up to ``steps`` scheduling steps; return the events in log order.

    ``kinds``: the failure kinds drawn; ``progress_rate``: how often a running trial reports an
    intermediate result; ``extend_to``: once the experiment finishes, extend it to this many
    cycles (once) and go on.
    """
    b = StateBuilder()
    events: list[Event] = []
    terminal: list[Event] = []

    def emit(e: Event) -> None:
        b.add(e)
        events.append(e)

    emit(created(strategy, space, seed))
    t = 0.0
    for _ in range(steps):
        t += 1.0
        if b.status != "running" and extend_to is not None and b.strategy and extend_to > b.strategy.cycles:
            if b.finished is None:
                emit(ExperimentFinished(b.status, finish_reason(b), t))
            emit(ExperimentExtended(extend_to, "more budget", t))
            continue
        if b.status != "running":
            break
        if len(b.running) < workers and rng.random() < 0.6:
            p = propose(b)
            if p is not None:
                emit(TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, t))
                continue
        if terminal and rng.random() < duplicate_rate:
            emit(rng.choice(terminal))
            continue
        if not b.running:
            continue
        trial = rng.choice(sorted(b.running))
        run = b.running[trial]
        if run.worker is None and rng.random() < 0.7:
            emit(TrialStarted(trial, run.attempt, f"w{rng.randrange(workers)}", t))
            continue
        if run.worker is not None and rng.random() < progress_rate:
            emit(TrialProgressed(trial, run.attempt, rng.randrange(100), rng.random(), t))
            continue
        e: Event
        if rng.random() < fail_rate:
            e = TrialFailed(trial, run.attempt, rng.choice(kinds), "boom", "w0", t)
        else:
            e = TrialCompleted(trial, run.attempt, objective(dict(run.config)), 1.0, "w0", t)
        terminal.append(e)
        emit(e)
    if b.status != "running" and b.finished is None:
        emit(ExperimentFinished(b.status, finish_reason(b), t))
    return events
