"""Whole-log invariants of a finished experiment, checked from the log alone (pure).

Used by the integration tests and ``scripts/fault_campaign.py``: a log that passes was not
corrupted by crashes, restarts, lost workers or duplicate deliveries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .events import Event, TrialCompleted, TrialFailed, TrialSubmitted
from .reducer import StateBuilder


def check_invariants(events: Iterable[Event], *, expect_status: str | None = "completed") -> list[str]:
    """Violations found in a log (empty when it is sound).

    Checked: the experiment ended with ``expect_status``; for a completed one, results equal
    ``cycles``; no run is still in flight; every accepted submission ``(trial, attempt)`` is
    unique and ended with exactly one terminal event that counted; every attempt of a trial
    carries the same config; attempts of a trial follow 0, 1, 2, ... .
    """
    b = StateBuilder()
    violations: list[str] = []
    accepted: Counter[tuple[int, int]] = Counter()
    counted: Counter[tuple[int, int]] = Counter()
    configs: dict[int, object] = {}
    for e in events:
        took = b.add_judged(e)
        if took and isinstance(e, TrialSubmitted):
            accepted[(e.trial, e.attempt)] += 1
            if e.attempt == 0:
                configs[e.trial] = e.config
            elif configs.get(e.trial) != e.config:
                violations.append(f"trial {e.trial} attempt {e.attempt} has another config than attempt 0")
        elif took and isinstance(e, TrialCompleted | TrialFailed):
            counted[(e.trial, e.attempt)] += 1
    for run, n in accepted.items():
        if n != 1:
            violations.append(f"trial {run[0]} attempt {run[1]} submitted {n} times")
        if counted[run] != 1:
            violations.append(f"trial {run[0]} attempt {run[1]} has {counted[run]} counted terminal events")
    attempts: dict[int, list[int]] = {}
    for t, a in sorted(accepted):
        attempts.setdefault(t, []).append(a)
    for t, seq in attempts.items():
        if seq != list(range(len(seq))):
            violations.append(f"trial {t} attempts {seq} are not 0..n")
    if b.running or b.retry:
        violations.append(f"runs still in flight: {sorted(b.running)} retry {sorted(b.retry)}")
    status = b.finished.status if b.finished else None
    if expect_status is not None and status != expect_status:
        violations.append(f"experiment status {status!r}, expected {expect_status!r}")
    if status == "completed" and b.strategy is not None and b.results != b.strategy.cycles:
        violations.append(f"results {b.results} != cycles {b.strategy.cycles}")
    return violations
