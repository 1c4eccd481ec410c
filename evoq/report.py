"""What evoq reports about an experiment, in one JSON shape and a few tables (pure).

The state JSON (``run --json``, ``status --json``, ``replay --json``)::

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
      "events": int,             # records folded (rejected ones included)
      "population": [{"trial": int, "config": {...}, "metric": float | null}, ...],  # oldest first
      "best": {"trial": int, "config": {...}, "metric": float} | null,
      "failures": [{"trial", "attempt", "kind", "worker", "message", "at"}, ...],  # newest last
      "in_flight": [{"trial", "attempt", "phase", "worker", "submitted_at", "started_at"}, ...],
      "rejected": int,           # records the fold skipped (garbled, foreign, newer schema, ...)
      "rejections": [{"position": str | int, "reason": str}, ...]       # the first 100
    }

Non-finite metrics (the worst metric given to failures under ``on_failure="worst"``) are written
as ``null`` so that the output is strict JSON. Tuples in configs become lists. Keys are only
ever added, never changed (golden logs check the older ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .events import Event, ExperimentFinished, TrialCompleted, TrialFailed, TrialStarted, TrialSubmitted
from .reducer import FailureNote, Individual, State, StateBuilder, finish_reason


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


def failure_json(f: FailureNote) -> dict[str, Any]:
    """One failed run, as the JSON state lists it."""
    return {
        "trial": f.trial,
        "attempt": f.attempt,
        "kind": f.kind,
        "worker": f.worker,
        "message": f.message,
        "at": f.at,
    }


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
        "failures": [failure_json(f) for f in state.recent_failures],
        "in_flight": [
            {
                "trial": r.trial,
                "attempt": r.attempt,
                "phase": r.phase,
                "worker": r.worker,
                "submitted_at": r.submitted_at,
                "started_at": r.started_at,
            }
            for r in sorted(state.running.values(), key=lambda r: r.trial)
        ],
        "rejected": state.rejected,
        "rejections": [{"position": r.position, "reason": r.reason} for r in state.rejections],
    }


def kinds_in_words(by_kind: Mapping[str, int]) -> str:
    """``{"error": 2, "lost": 1}`` as ``"2 error, 1 lost"`` (most frequent first)."""
    items = sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {kind}" for kind, n in items if n)


def first_line(message: str, limit: int = 160) -> str:
    """The first non-empty line of ``message``, cut to ``limit`` characters."""
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass
class TrialRow:
    """One trial as the log tells it (its last attempt)."""

    trial: int
    attempt: int
    config: Mapping[str, Any]
    parent: int | None
    phase: str
    status: str = "running"  # queued | running | completed | failed:<kind> | retry | cancelled
    metric: float | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    worker: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """The row as plain data (``evoq trials --json``)."""
        return {
            "trial": self.trial,
            "attempt": self.attempt,
            "phase": self.phase,
            "parent": self.parent,
            "status": self.status,
            "metric": _plain(self.metric),
            "duration": self.duration,
            "worker": self.worker,
            "message": self.message,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "config": _plain(self.config),
        }


TRIAL_COLUMNS = ("trial", "attempt", "phase", "parent", "status", "metric", "duration", "worker", "message")


def trial_rows(events: Iterable[Event]) -> dict[int, TrialRow]:
    """Every trial with its config, parent and outcome, by folding ``events`` through the reducer
    (so that duplicates and late events are judged exactly as the state judges them)."""
    table = TrialTable()
    for e in events:
        table.add(e)
    return table.rows


class TrialTable:
    """The trial rows of a log, folded one event at a time (what :func:`trial_rows` returns,
    kept up to date by a reader that follows a live log, e.g. the dashboard).

    Attributes:
        builder: the reducer's fold of the same events (the experiment's state).
        rows: each trial's row, for its last attempt.
        earlier: the rows of the attempts a later attempt replaced (lost, preempted, refused
            runs), oldest first, for the trials that had any.
    """

    def __init__(self) -> None:
        self.builder = StateBuilder()
        self.rows: dict[int, TrialRow] = {}
        self.earlier: dict[int, list[TrialRow]] = {}

    def add(self, e: Event) -> TrialRow | None:
        """Fold one event in; return the row it changed, or None when it changed none.

        Raises:
            InvalidLogError: as :meth:`StateBuilder.add` (e.g. no ``experiment_created`` first).
        """
        b, rows = self.builder, self.rows
        if isinstance(e, TrialStarted):
            run = b.running.get(e.trial)
            b.add(e)
            if run is not None and run.attempt == e.attempt and run.started_at is None and e.trial in rows:
                row = rows[e.trial]
                row.status, row.started_at, row.worker = "running", e.at, e.worker
                return row
            return None
        if isinstance(e, ExperimentFinished) and b.finished is None:
            for t in b.running:
                if t in rows:
                    rows[t].status = "cancelled"
            for t in b.retry:
                if t in rows:
                    rows[t].status = "cancelled"
        if not b.add_judged(e):
            return None
        if isinstance(e, TrialSubmitted):
            if e.trial in rows:
                self.earlier.setdefault(e.trial, []).append(rows[e.trial])
            row = rows[e.trial] = TrialRow(
                e.trial, e.attempt, e.config, e.parent, e.phase, status="queued", submitted_at=e.at
            )
            return row
        assert isinstance(e, TrialCompleted | TrialFailed)
        row = rows[e.trial]
        row.ended_at, row.worker = e.at, e.worker or row.worker
        if isinstance(e, TrialCompleted):
            row.duration = e.duration
        elif row.started_at is not None:
            row.duration = max(0.0, e.at - row.started_at)
        if isinstance(e, TrialCompleted) and math.isfinite(e.metric):
            row.status, row.metric = "completed", e.metric
        elif isinstance(e, TrialFailed):
            row.status, row.message = ("retry" if e.trial in b.retry else f"failed:{e.kind}"), e.message
        else:
            row.status = "failed:invalid_metric"
            row.message = f"returned a non-finite metric ({e.metric})"
        return row


def top_trials(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[TrialRow]:
    """The ``k`` best completed trials (ties: earlier trial first)."""
    done = [r for r in rows.values() if r.status == "completed" and r.metric is not None]
    sign = -1.0 if maximize else 1.0
    return sorted(done, key=lambda r: (sign * (r.metric or 0.0), r.trial))[:k]
