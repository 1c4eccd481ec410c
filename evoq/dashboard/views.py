"""What the dashboard's pages show, computed from the fold (pure functions of their arguments).

Each function takes what :class:`~evoq.dashboard.watch.Watcher` keeps — the state's
:func:`~evoq.report.summary`, the trial rows of :class:`~evoq.report.TrialTable`, the counted
ends of runs — plus the probes' answers and the current time, and returns plain data for a
template or for the charts. Nothing here reads a clock, a log or Redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..events import ExperimentCreated
from ..lineage import ancestry, entry
from ..report import (
    TrialRow,
    _plain,
    clock_text,
    first_line,
    json_safe,
    kinds_in_words,
    known_time,
    metric_text,
)
from ..strategy import Strategy
from .watch import Heartbeat, Point, WorkerInfo

ETA_WINDOW = 50
"""Results the rate (and so the ETA) is measured over: the most recent ones."""
STALE_HEARTBEAT = 0.75
"""A heartbeat older than this fraction of its TTL is shown as late."""


def duration_text(seconds: float | None) -> str:
    """``"42s"``, ``"3m 05s"``, ``"2h 07m"``, ``"3d 04h"``; ``"-"`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def value_text(value: Any) -> str:
    """A config value as text (floats with 6 significant digits)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def rate_and_eta(
    results_at: Sequence[tuple[float, int]], results: int, cycles: int | None, status: str
) -> tuple[float | None, float | None]:
    """``(results per second, seconds left)`` from the times of the last :data:`ETA_WINDOW`
    results; None where it cannot be told (fewer than two results, a finished experiment)."""
    recent = list(results_at)[-ETA_WINDOW:]
    if len(recent) < 2:
        return None, None
    (t0, r0), (t1, r1) = recent[0], recent[-1]
    if t1 <= t0 or r1 <= r0:
        return None, None
    rate = (r1 - r0) / (t1 - t0)
    if status != "running" or cycles is None:
        return rate, None
    return rate, max(0, cycles - results) / rate


def progress_view(
    data: Mapping[str, Any], results_at: Sequence[tuple[float, int]], now: float
) -> dict[str, Any]:
    """The head of an experiment's page: counts, progress, rate and ETA, best, incumbent.

    ``data`` is :func:`~evoq.report.summary` of the state (an ``incumbent`` key is shown when
    the summary has one)."""
    results, cycles = data["results"], data["cycles"]
    rate, eta = rate_and_eta(results_at, results, cycles, data["status"])
    best = data.get("best")
    incumbent = data.get("incumbent")
    return {
        "status": data["status"],
        "reason": data["reason"],
        "results": results,
        "cycles": cycles,
        "percent": min(100.0, 100.0 * results / cycles) if cycles else 0.0,
        "completed": data["completed"],
        "failed": data["failed"],
        "failed_by_kind": kinds_in_words(data["failed_by_kind"]),
        "running": data["running"],
        "events": data["events"],
        "rejected": data["rejected"],
        "rate_per_min": None if rate is None else rate * 60,
        "eta": duration_text(eta) if eta is not None else ("-" if data["status"] == "running" else "done"),
        "finish_at": clock_text(now + eta) if eta is not None else "-",
        "best": None if not best else {"trial": best["trial"], "metric": metric_text(best["metric"])},
        "incumbent": _incumbent(incumbent),
    }


def _incumbent(value: Any) -> list[tuple[str, str]] | None:
    """An ``incumbent`` entry of the summary as ``(label, text)`` pairs (its scalar fields)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return [("value", value_text(value))]
    pairs = []
    for k, v in value.items():
        if isinstance(v, Mapping):
            continue  # the config: shown on the trial's page
        pairs.append((str(k), metric_text(v) if isinstance(v, float) else value_text(v)))
    return pairs


def running_view(
    in_flight: Sequence[Mapping[str, Any]], beats: Mapping[tuple[int, int], Heartbeat] | None, now: float
) -> list[dict[str, Any]]:
    """The runs in flight: worker, attempt, elapsed time and heartbeat age (``beats`` None: the
    heartbeats cannot be read from here, e.g. an embedded run of another process)."""
    out = []
    for r in in_flight:
        started = r["started_at"]
        beat = beats.get((r["trial"], r["attempt"])) if beats is not None else None
        if beats is None:
            hb, late = "n/a", False
        elif started is None:
            hb, late = "-", False
        elif beat is None or beat.ttl_left is None:
            hb, late = "none", True
        elif beat.age is None:
            hb, late = f"expires in {beat.ttl_left:.1f}s", False
        else:
            assert beat.ttl is not None
            hb, late = f"{beat.age:.1f}s ago", beat.age > STALE_HEARTBEAT * beat.ttl
        out.append(
            {
                "trial": r["trial"],
                "attempt": r["attempt"],
                "phase": r["phase"],
                "worker": r["worker"] or "",
                "state": "running" if started is not None else "queued",
                "elapsed": duration_text(now - started if started is not None else now - r["submitted_at"]),
                "heartbeat": hb,
                "late": late,
            }
        )
    return out


def workers_view(
    workers: Sequence[WorkerInfo], in_flight: Sequence[Mapping[str, Any]], now: float
) -> list[dict[str, Any]]:
    """The RQ workers of the experiment's queues, with the trials of this experiment each runs."""
    running: dict[str, list[int]] = {}
    for r in in_flight:
        if r["worker"] and r["started_at"] is not None:
            running.setdefault(r["worker"], []).append(r["trial"])
    return [
        {
            "name": w.name,
            "state": w.state,
            "host": w.hostname or "-",
            "pid": w.pid if w.pid is not None else "-",
            "queues": ", ".join(w.queues),
            "seen": duration_text(now - w.last_heartbeat) + " ago" if w.last_heartbeat else "-",
            "up": duration_text(now - w.birth) if w.birth else "-",
            "jobs": f"{w.successful} ok, {w.failed} failed",
            "trials": running.get(w.name, []),
        }
        for w in sorted(workers, key=lambda w: w.name)
    ]


def failures_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """Failures by kind (most frequent first) and the recent ones with their messages, newest
    first."""
    kinds = sorted(data["failed_by_kind"].items(), key=lambda kv: (-kv[1], kv[0]))
    recent = [
        {
            "trial": f["trial"],
            "attempt": f["attempt"],
            "kind": f["kind"],
            "worker": f["worker"] or "?",
            "at": clock_text(f["at"]),
            "first_line": first_line(f["message"]) or "(no message)",
            "message": f["message"],
        }
        for f in reversed(data["failures"])
    ]
    return {"total": data["failed"], "by_kind": [(k, n) for k, n in kinds if n], "recent": recent}


def lineage_view(rows: Mapping[int, TrialRow], best: int | None) -> list[dict[str, Any]]:
    """The best trial's ancestry, best first: each trial's metric, phase and the parameters its
    mutation changed (``[(name, parent value, value)]``); see :mod:`evoq.lineage`."""
    out = []
    for t in ancestry(rows, best):
        if t not in rows:
            break
        e = entry(rows[t], rows)
        out.append(
            {
                "trial": t,
                "parent": e["parent"],
                "phase": e["phase"],
                "metric": metric_text(e["metric"]),
                "mutated": [(k, value_text(a), value_text(b)) for k, (a, b) in e["mutated"].items()],
            }
        )
    return out


def params_view(experiment: ExperimentCreated | None, strategy: Strategy | None) -> list[tuple[str, str]]:
    """The experiment's parameters as ``(label, value)``: the sizes resolved at creation (P,
    S), the seed, and every other strategy value, as the creation record (and extensions) hold
    them."""
    if experiment is None or strategy is None:
        return []
    st = strategy.to_dict()
    head = [
        ("population size P", str(strategy.population_size)),
        ("sample size S", str(strategy.sample_size)),
        ("seed", str(experiment.seed)),
        ("cycles", str(strategy.cycles)),
        ("optimize", str(st.get("optimize_mode", ""))),
        ("trial", experiment.trial),
        ("search space", f"{len(experiment.space)} parameters: {', '.join(sorted(experiment.space))}"),
    ]
    shown = {"population_size", "sample_size", "cycles", "optimize_mode"}
    rest = [(k.replace("_", " "), value_text(v)) for k, v in sorted(st.items()) if k not in shown]
    return head + rest + [("created", clock_text(experiment.at)), ("evoq version", experiment.evoq_version)]


def audit_view(report: Any, checked: int, fed: int, finished: bool) -> dict[str, Any]:
    """The live audit (an :class:`~evoq.audit.AuditReport` being filled in): ``clean`` through
    the records checked so far, or its first finding."""
    findings = [f for f in report.findings if f.kind != "rejected"]
    rejected = [f for f in report.findings if f.kind == "rejected"]
    first = findings[0] if findings else None
    if first is not None:
        state = "finding"
    elif finished and fed:
        state = "stopped"
    elif checked < fed:
        state = "checking"
    else:
        state = "clean"
    return {
        "state": state,
        "checked": checked,
        "fed": fed,
        "decisions": report.decisions_checked,
        "duplicates": report.ignored_terminal,
        "rejected": len(rejected),
        "chain": report.chain,
        "finding": None
        if first is None
        else {
            "record": first.record,
            "position": str(first.position),
            "kind": first.kind,
            "message": first.message,
            "field": first.field,
            "logged": None if first.field is None else repr(_plain(first.logged)),
            "expected": None if first.field is None else repr(_plain(first.expected)),
        },
    }


def points_json(points: Sequence[Point]) -> list[list[Any]]:
    """Counted ends of runs for the charts: ``[trial, time in ms, metric or None, kind, attempt]``."""
    return [[p.trial, _ms(p.at), _finite(p.metric), p.kind, p.attempt] for p in points]


def _ms(at: float | None) -> int | None:
    known = known_time(at)
    return None if known is None else round(known * 1000)


def json_for_html(data: Any) -> str:
    """Compact JSON, safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(json_safe(data), separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def population_json(population: Sequence[Mapping[str, Any]], rows: Mapping[int, TrialRow]) -> list[list[Any]]:
    """The current population for the charts: ``[trial, end time in ms, metric]``."""
    out = []
    for ind in population:
        row = rows.get(ind["trial"])
        ended = row.ended_at if row is not None and row.ended_at else None
        out.append([ind["trial"], _ms(ended), _finite(ind["metric"])])
    return out


def _finite(value: Any) -> float | None:
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def trial_view(
    trial: int,
    rows: Mapping[int, TrialRow],
    earlier: Mapping[int, Sequence[TrialRow]],
    children: Mapping[int, Sequence[int]],
    *,
    failure_kinds: Mapping[tuple[int, int], str] | None = None,
    population: Sequence[int],
    best: int | None,
    now: float,
) -> dict[str, Any] | None:
    """One trial's page: config, parent (and what the mutation changed), children, outcome, and
    every attempt with its worker, times and failure message (an attempt that ran again is
    shown with its failure kind, from ``failure_kinds``). None for an unknown trial."""
    row = rows.get(trial)
    if row is None:
        return None
    e = entry(row, rows)
    changed = {k for k in e["mutated"]}
    attempts = []
    for r in [*earlier.get(trial, ()), row]:
        running_for = now - r.started_at if r.started_at is not None and r.ended_at is None else None
        status = r.status
        kind = (failure_kinds or {}).get((trial, r.attempt))
        if status == "retry" and kind:
            status = f"{kind}, ran again"
        attempts.append(
            {
                "attempt": r.attempt,
                "status": status,
                "worker": r.worker or "-",
                "submitted": clock_text(r.submitted_at),
                "started": clock_text(r.started_at),
                "ended": clock_text(r.ended_at),
                "duration": duration_text(r.duration if r.duration is not None else running_for),
                "message": r.message,
            }
        )
    kids = [
        {"trial": c, "status": rows[c].status, "metric": metric_text(rows[c].metric)}
        for c in children.get(trial, ())
        if c in rows
    ]
    return {
        "trial": trial,
        "status": row.status,
        "phase": row.phase,
        "metric": metric_text(row.metric),
        "duration": duration_text(row.duration),
        "worker": row.worker or "-",
        "attempts": attempts,
        "config": [(k, value_text(v), k in changed) for k, v in row.config.items()],
        "parent": row.parent,
        "parent_metric": metric_text(rows[row.parent].metric) if row.parent in rows else "-",  # type: ignore[index]
        "mutated": [(k, value_text(a), value_text(b)) for k, (a, b) in e["mutated"].items()],
        "children": kids,
        "in_population": trial in population,
        "is_best": trial == best,
    }
