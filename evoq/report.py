"""The one JSON shape in which evoq reports a state (``run --json``, ``status``, ``replay``).

::

    {
      "name": str, "status": "running" | "completed" | "failed" | "stopped" | "empty",
      "reason": str,
      "completed": int,          # trials that returned a finite metric
      "results": int,            # results counted toward cycles (completions + "worst" failures)
      "cycles": int,
      "failed": int,             # failed runs of every kind
      "failed_by_kind": {kind: int},
      "running": int,            # runs in flight (incl. those awaiting a retry)
      "next_trial": int,
      "events": int,
      "population": [{"trial": int, "config": {...}, "metric": float | null}, ...],  # oldest first
      "best": {"trial": int, "config": {...}, "metric": float} | null
    }

Non-finite metrics (the worst metric given to failures under ``on_failure="worst"``) are written
as ``null`` so that the output is strict JSON. Tuples in configs become lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .events import Event, TrialCompleted, TrialFailed, TrialSubmitted
from .reducer import Individual, State, StateBuilder, finish_reason


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def individual_json(ind: Individual) -> dict[str, Any]:
    """``{"trial", "config", "metric"}`` of a population member."""
    return {"trial": ind.trial, "config": _plain(ind.config), "metric": _plain(ind.metric)}


def summary(state: State) -> dict[str, Any]:
    """The state in evoq's documented JSON shape (see the module docstring)."""
    exp, st = state.experiment, state.strategy
    return {
        "name": exp.name if exp else None,
        "status": state.status,
        "reason": finish_reason(state),
        "completed": state.completed,
        "results": state.results,
        "cycles": st.cycles if st else None,
        "failed": state.failed_total,
        "failed_by_kind": dict(state.failed),
        "running": len(state.running) + len(state.retry),
        "next_trial": state.next_trial,
        "events": state.events,
        "population": [individual_json(i) for i in state.population],
        "best": individual_json(state.best) if state.best else None,
    }


@dataclass
class TrialRow:
    """One trial as the log tells it (its last attempt)."""

    trial: int
    attempt: int
    config: Mapping[str, Any]
    parent: int | None
    phase: str
    status: str = "running"  # running | completed | failed:<kind> | retry
    metric: float | None = None
    submitted_at: float = 0.0
    ended_at: float | None = None
    worker: str = ""
    message: str = ""


def trial_rows(events: Iterable[Event]) -> dict[int, TrialRow]:
    """Every trial with its config, parent and outcome, by folding ``events`` through the reducer
    (so that duplicates and late events are judged exactly as the state judges them)."""
    b = StateBuilder()
    rows: dict[int, TrialRow] = {}
    for e in events:
        if not b.add_judged(e):
            continue
        if isinstance(e, TrialSubmitted):
            rows[e.trial] = TrialRow(e.trial, e.attempt, e.config, e.parent, e.phase, submitted_at=e.at)
        elif isinstance(e, TrialCompleted | TrialFailed):
            row = rows[e.trial]
            row.ended_at, row.worker = e.at, e.worker
            if isinstance(e, TrialCompleted) and math.isfinite(e.metric):
                row.status, row.metric = "completed", e.metric
            elif isinstance(e, TrialFailed):
                row.status, row.message = ("retry" if e.trial in b.retry else f"failed:{e.kind}"), e.message
            else:
                row.status = "failed:invalid_metric"
    return rows


def top_trials(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[TrialRow]:
    """The ``k`` best completed trials (ties: earlier trial first)."""
    done = [r for r in rows.values() if r.status == "completed" and r.metric is not None]
    sign = -1.0 if maximize else 1.0
    return sorted(done, key=lambda r: (sign * (r.metric or 0.0), r.trial))[:k]
