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
from collections.abc import Mapping
from typing import Any

from .reducer import Individual, State, finish_reason


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
