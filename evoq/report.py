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
      "best": {"trial": int, "config": {...}, "metric": float} | null,   # the best single result
      "incumbent": {"trial": int, "config": {...}, "metric": float,      # what evoq reports as best:
                    "evaluations": int} | null,                         # the best mean of evaluations
      "reevaluated": int,        # results of re-evaluations (in "results" and "completed")
      "failures": [{"trial", "attempt", "kind", "worker", "message", "at"}, ...],  # newest last
      "in_flight": [{"trial", "attempt", "phase", "worker", "submitted_at", "started_at",
                     "progress": {"step", "value", "reports"} | null}, ...],
      "rejected": int,           # records the fold skipped (garbled, foreign, newer schema, ...)
      "rejections": [{"position": str | int, "reason": str}, ...]       # the first 100
    }

``best`` is the best *single* result (a lucky draw on a noisy objective can put a config there);
``incumbent`` is the config evoq reports as best: the best *mean* over its evaluations, with their
count (``reeval_count`` in :class:`~evoq.strategy.Strategy`; without re-evaluation it is the best
single result of a trial, and ``evaluations`` is 1). A population member's metric is the mean of
its evaluations so far.

Non-finite metrics (the worst metric given to failures under ``on_failure="worst"``) are written
as ``null`` so that the output is strict JSON. Tuples in configs become lists. Keys are only
ever added, never changed (golden logs check the older ones).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .events import (
    Event,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialProgressed,
    TrialStarted,
    TrialSubmitted,
)
from .reducer import FailureNote, Individual, State, StateBuilder, finish_reason

LATEST_TIME = 253402300799.0
"""9999-12-31 23:59:59 UTC: a logged time beyond it (or not finite) is shown as unknown."""


def known_time(at: Any) -> float | None:
    """A logged Unix time as a finite float in years 1970-9999, else None (times come from
    whoever wrote the log: a forged ``inf`` or ``1e300`` must not break what shows them)."""
    if (
        isinstance(at, int | float)
        and not isinstance(at, bool)
        and math.isfinite(at)
        and 0 < at <= LATEST_TIME
    ):
        return float(at)
    return None


def clock_text(at: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``; ``"-"`` for None, 0 or a time no clock shows."""
    known = known_time(at)
    if known is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(known))
    except (OverflowError, OSError, ValueError):
        return "-"


_CONTROLS = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|\r(?!\n)"
)


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences that set the title,
    clear the screen or hide text; C1 controls; bidirectional overrides) are shown escaped, as
    ``\\x1b``, instead of acting. Logged names and messages come from whoever wrote the log."""
    return _CONTROLS.sub(
        lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def metric_text(metric: float | None) -> str:
    """A metric with 6 significant digits; ``"-"`` for None or a non-finite value."""
    if not isinstance(metric, int | float) or not math.isfinite(metric):
        return "-"
    return f"{metric:.6g}"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None: JSON any strict parser reads
    (``json.dumps`` writes ``NaN``/``Infinity`` otherwise, which JSON does not have)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


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


def incumbent_json(state: State) -> dict[str, Any] | None:
    """``{"trial", "config", "metric", "evaluations"}`` of the incumbent (``metric`` is the mean)."""
    inc = state.incumbent
    if inc is None:
        return None
    return {
        "trial": inc.trial,
        "config": _plain(inc.config),
        "metric": _plain(inc.metric),
        "evaluations": inc.evaluations,
    }


def best_lines(data: Mapping[str, Any]) -> list[str]:
    """The human lines for the incumbent and the best single result of a :func:`summary`."""
    lines = []
    inc, best = data.get("incumbent"), data.get("best")
    if inc:
        n = inc["evaluations"]
        lines.append(
            f"  incumbent (best mean of {n} evaluation{'s' if n != 1 else ''}): trial {inc['trial']} "
            f"mean {inc['metric']:.6g} config {json.dumps(inc['config'])}"
        )
    if best and not (inc and inc["evaluations"] == 1 and inc["trial"] == best["trial"]):
        lines.append(
            f"  best single result: trial {best['trial']} metric {best['metric']:.6g} "
            f"config {json.dumps(best['config'])}"
        )
    elif best:
        lines.append("  (the incumbent is also the best single result)")
    return lines


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
                "progress": _progress_json(state.progress.get(r.trial)),
            }
            for r in sorted(state.running.values(), key=lambda r: r.trial)
        ],
        "rejected": state.rejected,
        "rejections": [{"position": r.position, "reason": r.reason} for r in state.rejections],
        "incumbent": incumbent_json(state),
        "reevaluated": state.reevaluated,
    }


def _progress_json(p: tuple[int, float, int] | None) -> dict[str, Any] | None:
    return None if p is None else {"step": p[0], "value": _plain(p[1]), "reports": p[2]}


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
    curve: list[tuple[int, float]] = field(default_factory=list)
    """Intermediate results ``(step, value)`` of the row's attempt, in the order reported."""

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
            "intermediate": [[step, _plain(value)] for step, value in self.curve],
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
        if isinstance(e, TrialProgressed):
            run = b.running.get(e.trial)
            b.add(e)
            if run is not None and run.attempt == e.attempt and e.trial in rows:
                rows[e.trial].curve.append((e.step, e.value))
                return rows[e.trial]
            return None
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


def evaluations(rows: Mapping[int, TrialRow]) -> dict[int, list[float]]:
    """Every config's metrics, under the first trial that evaluated it: its result, those of
    later trials that ran the same config (a duplicate proposed when the space ran out of unseen
    configs) and those of its completed re-evaluations."""
    out: dict[int, list[float]] = {}
    group: dict[int, int] = {}  # trial -> the first trial of its config
    first_of: dict[str, int] = {}
    for r in sorted(rows.values(), key=lambda r: r.trial):
        if r.status != "completed" or r.metric is None:
            continue
        if r.phase == "reeval" and r.parent is not None:
            head = group.get(r.parent)
            if head is not None:
                out[head].append(r.metric)
            continue
        key = json.dumps(_plain(r.config), sort_keys=True, default=repr)
        head = first_of.setdefault(key, r.trial)
        group[r.trial] = head
        out.setdefault(head, []).append(r.metric)
    return out


def config_trials(rows: Mapping[int, TrialRow]) -> dict[int, list[int]]:
    """The trials (re-evaluations aside) that ran each config, under its first trial."""
    out: dict[int, list[int]] = {}
    first_of: dict[str, int] = {}
    for r in sorted(rows.values(), key=lambda r: r.trial):
        if r.status != "completed" or r.metric is None or r.phase == "reeval":
            continue
        head = first_of.setdefault(json.dumps(_plain(r.config), sort_keys=True, default=repr), r.trial)
        out.setdefault(head, []).append(r.trial)
    return out


def top_trials(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[TrialRow]:
    """The first trials of the ``k`` best configs by the mean of their evaluations (ties:
    earlier trial first); re-evaluations and duplicates are folded into the config's first
    trial (:func:`evaluations`)."""
    evals = evaluations(rows)
    sign = -1.0 if maximize else 1.0
    ranked = sorted(evals, key=lambda t: (sign * math.fsum(evals[t]) / len(evals[t]), t))
    return [rows[t] for t in ranked[:k]]


def top_json(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[dict[str, Any]]:
    """``evoq top``: ``{"trial", "mean", "evaluations", "first", "metric", "config", "parent",
    "trials"}`` per config, best mean first (``metric`` is the mean, ``first`` the result of its
    first trial, ``trials`` every trial that ran it, re-evaluations aside)."""
    evals = evaluations(rows)
    runs = config_trials(rows)
    out = []
    for r in top_trials(rows, k, maximize=maximize):
        xs = evals[r.trial]
        mean = math.fsum(xs) / len(xs)
        out.append(
            {
                "trial": r.trial,
                "metric": mean,
                "mean": mean,
                "evaluations": len(xs),
                "first": xs[0],
                "config": _plain(r.config),
                "parent": r.parent,
                "trials": runs.get(r.trial, [r.trial]),
            }
        )
    return out


def top_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``evoq top``'s human lines: rank, trial, mean with its evaluation count, config."""
    return [
        f"{rank:3d}. trial {r['trial']:5d}  mean {r['mean']:.6g} of {r['evaluations']}"
        + (f" (first {r['first']:.6g})" if r["evaluations"] > 1 else "")
        + (f" (also trials {', '.join(map(str, r['trials'][1:]))})" if len(r.get("trials", ())) > 1 else "")
        + f"  {json.dumps(r['config'])}"
        for rank, r in enumerate(rows, 1)
    ]
