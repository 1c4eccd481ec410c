"""Lineage: every trial with its parent, metric and mutated parameters; the best trial's ancestry."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .events import Event
from .reducer import StateBuilder
from .report import TrialRow, _plain, trial_rows


def lineage(events: Sequence[Event]) -> dict[str, Any]:
    """``{"trials": [...], "incumbent": trial | None, "best": trial | None, "ancestry": [...]}``.

    ``incumbent`` is the trial evoq reports as best (the best mean of its evaluations), ``best``
    the trial with the best single result (a re-evaluation run can be it); ``ancestry`` is the
    incumbent's: ``[incumbent, parent, grandparent, ...]``. Each trial: ``trial, parent, phase,
    status, metric, attempt, mutated`` (the parameters whose value differs from the parent's:
    ``{name: [parent value, child value]}``; a re-evaluation's parent is the trial it
    re-evaluates, with nothing mutated) and ``config``.
    """
    rows = trial_rows(events)
    b = StateBuilder()
    b.add_all(events)
    trials = [entry(r, rows) for r in sorted(rows.values(), key=lambda r: r.trial)]
    top = b.incumbent.trial if b.incumbent is not None else None
    return {
        "trials": trials,
        "incumbent": top,
        "best": b.best.trial if b.best else None,
        "ancestry": ancestry(rows, top),
    }


def ancestry(rows: Mapping[int, TrialRow], trial: int | None) -> list[int]:
    """``[trial, parent, grandparent, ...]`` back to an ``init`` trial (empty for None)."""
    line: list[int] = []
    seen: set[int] = set()
    t = trial
    while t is not None and t not in seen:
        line.append(t)
        seen.add(t)
        t = rows[t].parent if t in rows else None
    return line


def entry(r: TrialRow, rows: Mapping[int, TrialRow]) -> dict[str, Any]:
    """One trial of the lineage: ``trial, parent, phase, status, metric, attempt, mutated,
    config`` (``mutated``: ``{name: [parent value, child value]}``)."""
    parent = rows.get(r.parent) if r.parent is not None else None
    mutated = {}
    if parent is not None:
        mutated = {
            k: [_plain(parent.config.get(k)), _plain(v)]
            for k, v in r.config.items()
            if parent.config.get(k) != v
        }
    return {
        "trial": r.trial,
        "parent": r.parent,
        "phase": r.phase,
        "status": r.status,
        "metric": _plain(r.metric),
        "attempt": r.attempt,
        "mutated": mutated,
        "config": _plain(r.config),
    }


def render(data: dict[str, Any], fmt: str) -> str:
    """The lineage as ``json``, ``csv`` or Graphviz ``dot``."""
    if fmt == "json":
        return json.dumps(data, indent=2)
    trials: Sequence[dict[str, Any]] = data["trials"]
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(
            [
                "trial",
                "parent",
                "phase",
                "status",
                "metric",
                "attempt",
                "mutated",
                "in_incumbent_ancestry",
                "config",
            ]
        )
        best_line = set(data["ancestry"])
        for t in trials:
            w.writerow(
                [
                    t["trial"],
                    "" if t["parent"] is None else t["parent"],
                    t["phase"],
                    t["status"],
                    "" if t["metric"] is None else t["metric"],
                    t["attempt"],
                    json.dumps(t["mutated"]),
                    int(t["trial"] in best_line),
                    json.dumps(t["config"]),
                ]
            )
        return out.getvalue()
    if fmt == "dot":
        best_line = set(data["ancestry"])
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
        for t in trials:
            metric = "-" if t["metric"] is None else f"{t['metric']:.4g}"
            style = ', style=filled, fillcolor="#ffd27f"' if t["trial"] in best_line else ""
            tag = ""
            if t["trial"] == data.get("incumbent"):
                tag += "\\nincumbent (best mean)"
            if t["trial"] == data.get("best"):
                tag += "\\nbest single result"
            lines.append(f'  t{t["trial"]} [label="{t["trial"]}\\n{metric}{tag}"{style}];')
            if t["parent"] is not None:
                label = ", ".join(t["mutated"]).replace('"', "'")
                lines.append(f'  t{t["parent"]} -> t{t["trial"]} [label="{label}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown lineage format {fmt!r} (csv, json, dot)")
