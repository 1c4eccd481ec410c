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
      "best": {"trial": int, "config": {...}, "metric": float} | null,   # the best single result
      "incumbent": {"trial": int, "config": {...}, "metric": float,      # what evoq reports as best:
                    "evaluations": int} | null,                         # the best mean of evaluations
      "reevaluated": int         # results of re-evaluations (in "results" and "completed")
    }

``best`` is the best *single* result (a lucky draw on a noisy objective can put a config there);
``incumbent`` is the config evoq reports as best: the best *mean* over its evaluations, with their
count (``reeval_count`` in :class:`~evoq.strategy.Strategy`; without re-evaluation it is the best
single result of a trial, and ``evaluations`` is 1). A population member's metric is the mean of
its evaluations so far.

Non-finite metrics (the worst metric given to failures under ``on_failure="worst"``) are written
as ``null`` so that the output is strict JSON. Tuples in configs become lists.
"""

from __future__ import annotations

import json
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
        "incumbent": incumbent_json(state),
        "reevaluated": state.reevaluated,
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


def evaluations(rows: Mapping[int, TrialRow]) -> dict[int, list[float]]:
    """Every trial's metrics: its own result, then those of its completed re-evaluations."""
    out: dict[int, list[float]] = {}
    for r in sorted(rows.values(), key=lambda r: r.trial):
        if r.status != "completed" or r.metric is None:
            continue
        if r.phase == "reeval" and r.parent is not None:
            if r.parent in out:
                out[r.parent].append(r.metric)
        else:
            out[r.trial] = [r.metric]
    return out


def top_trials(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[TrialRow]:
    """The ``k`` best completed trials by the mean of their evaluations (ties: earlier trial
    first); re-evaluation runs are folded into the trial they re-evaluate."""
    evals = evaluations(rows)
    sign = -1.0 if maximize else 1.0
    ranked = sorted(evals, key=lambda t: (sign * math.fsum(evals[t]) / len(evals[t]), t))
    return [rows[t] for t in ranked[:k]]


def top_json(rows: Mapping[int, TrialRow], k: int, *, maximize: bool) -> list[dict[str, Any]]:
    """``evoq top``: ``{"trial", "mean", "evaluations", "first", "metric", "config", "parent"}``
    per trial, best mean first (``metric`` is the mean, ``first`` the trial's own result)."""
    evals = evaluations(rows)
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
            }
        )
    return out


def top_lines(rows: list[dict[str, Any]]) -> list[str]:
    """``evoq top``'s human lines: rank, trial, mean with its evaluation count, config."""
    return [
        f"{rank:3d}. trial {r['trial']:5d}  mean {r['mean']:.6g} of {r['evaluations']}"
        + (f" (first {r['first']:.6g})" if r["evaluations"] > 1 else "")
        + f"  {json.dumps(r['config'])}"
        for rank, r in enumerate(rows, 1)
    ]
