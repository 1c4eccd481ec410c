"""``evoq plot``: every trial's metric and the best so far, by trial number and by wall clock.

Completed trials are dots (members of the final population highlighted), the best so far a line;
failed runs are marked along the bottom (or top, when minimizing) with their kind, so a streak
of failures is seen where it happened. The metric axis is logarithmic when the metrics are all
positive and span more than two decades; the time axis is in seconds, minutes or hours,
whichever reads best. When trials reported intermediate results, a third panel draws their
learning curves (the five best trials highlighted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .events import Event, TrialFailed
from .reducer import StateBuilder
from .report import TrialRow, trial_rows

_FAILURE_MARKS = {
    "error": "x",
    "invalid_metric": "1",
    "timeout": "v",
    "lost": "s",
    "preempted": "p",
    "refused": "D",
}


def time_unit(span_s: float) -> tuple[float, str]:
    """``(divisor, label)`` of a time axis covering ``span_s`` seconds."""
    if span_s < 300:
        return 1.0, "seconds"
    if span_s < 3 * 3600:
        return 60.0, "minutes"
    return 3600.0, "hours"


def log_scale(values: Sequence[float]) -> bool:
    """Whether a metric axis should be logarithmic: all positive, spanning > 2 decades."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100


def _learning_curves(ax: Any, rows: list[TrialRow], top: set[int]) -> None:
    """Intermediate results against step, one line per trial; the five best highlighted."""
    for r in rows:
        steps, values = [s for s, _ in r.curve], [v for _, v in r.curve]
        best = r.trial in top
        ax.plot(steps, values, lw=1.6 if best else 0.6, c="tab:blue" if best else "0.7", alpha=1.0 if best else 0.6,
                label=f"trial {r.trial}" if best else None)  # fmt: skip
    ax.set_xlabel("step (intermediate results)")
    ax.set_ylabel("intermediate metric")
    ax.grid(alpha=0.3)
    if top & {r.trial for r in rows}:
        ax.legend(fontsize="small")


def plot(events: Sequence[Event], output: str | Path) -> Path:
    """Write a PNG: metrics against trial number (population members and re-evaluations marked,
    the best single result so far as a line) and against wall-clock time since the experiment
    started, failed runs marked by kind, and learning curves when trials reported intermediate
    results. The title names the incumbent (best mean, with its number of evaluations) and the
    best single result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = StateBuilder()
    b.add_all(events)
    exp, st = b.experiment, b.strategy
    if exp is None or st is None:
        raise ValueError("the log has no experiment_created record")
    rows = trial_rows(events)
    done = sorted(
        (r for r in rows.values() if r.status == "completed" and r.metric is not None), key=lambda r: r.trial
    )
    failures = [e for e in events if isinstance(e, TrialFailed)]
    members = {ind.trial for ind in b.population}
    reevals = {r.trial for r in rows.values() if r.phase == "reeval"}
    t0 = min((e.at for e in events if e.at), default=0.0)
    t_end = max((e.at for e in events if e.at), default=t0)
    div, unit = time_unit(t_end - t0)
    curves = sorted((r for r in rows.values() if r.curve), key=lambda r: r.trial)
    fig, axes = plt.subplots(
        1, 3 if curves else 2, figsize=(18 if curves else 12, 4.5), constrained_layout=True
    )
    by_end = sorted(done, key=lambda r: r.ended_at or 0.0)
    metrics = [float(r.metric) for r in done if r.metric is not None]
    use_log = log_scale(metrics)
    better = max if st.maximize else min

    def when(at: float) -> float:
        return (at - t0) / div

    panels: tuple[tuple[object, list[TrialRow], list[float], list[float], str], ...] = (
        (axes[0], done, [float(r.trial) for r in done], [float(f.trial) for f in failures], "trial number"),
        (axes[1], by_end, [when(r.ended_at or t0) for r in by_end], [when(f.at) for f in failures],
         f"wall-clock {unit} since start"),
    )  # fmt: skip
    for ax, ordered, xs, fail_xs, label in panels:
        ys = [float(r.metric) for r in ordered if r.metric is not None]
        in_pop = [r.trial in members for r in ordered]
        again = [r.trial in reevals for r in ordered]
        plain = [not p and not a for p, a in zip(in_pop, again, strict=True)]
        ax.scatter([x for x, p in zip(xs, plain, strict=True) if p],  # type: ignore[attr-defined]
                   [y for y, p in zip(ys, plain, strict=True) if p],
                   s=10, c="0.6", label="trial")  # fmt: skip
        if reevals:
            ax.scatter([x for x, a in zip(xs, again, strict=True) if a],  # type: ignore[attr-defined]
                       [y for y, a in zip(ys, again, strict=True) if a],
                       s=14, c="tab:green", marker="x", label="re-evaluation")  # fmt: skip
        ax.scatter([x for x, p in zip(xs, in_pop, strict=True) if p],  # type: ignore[attr-defined]
                   [y for y, p in zip(ys, in_pop, strict=True) if p],
                   s=18, c="tab:orange", label="in final population")  # fmt: skip
        best: list[float] = []
        for y in ys:
            best.append(y if not best else better(best[-1], y))
        ax.step(xs, best, where="post", c="tab:blue", lw=2, label="best single result so far")  # type: ignore[attr-defined]
        if use_log:
            ax.set_yscale("log")  # type: ignore[attr-defined]
        if failures:
            # failed runs along the bottom (maximize) or top (minimize) edge, by kind
            edge = 0.02 if st.maximize else 0.98
            transform = ax.get_xaxis_transform()  # type: ignore[attr-defined]
            for kind, marker in _FAILURE_MARKS.items():
                kx = [x for x, f in zip(fail_xs, failures, strict=True) if f.kind == kind]
                if kx:
                    ax.scatter(kx, [edge] * len(kx), transform=transform, marker=marker, s=22,  # type: ignore[attr-defined]
                               c="tab:red", label=f"failed: {kind} ({len(kx)})", clip_on=False)  # fmt: skip
        ax.set_xlabel(label)  # type: ignore[attr-defined]
        ax.set_ylabel("metric" + (" (log scale)" if use_log else ""))  # type: ignore[attr-defined]
        ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    axes[0].legend(loc="lower right" if st.maximize else "upper right", fontsize="small")
    if curves:
        ranked = sorted(done, key=lambda r: r.metric or 0.0, reverse=st.maximize)
        _learning_curves(axes[2], curves, top={r.trial for r in ranked[:5]})
    inc = b.incumbent
    best_text = (
        f"incumbent (best mean) {inc.metric:.4g} over {inc.evaluations} evaluation"
        f"{'s' if inc.evaluations != 1 else ''} (trial {inc.trial})"
        if inc is not None
        else ""
    )
    if b.best and math.isfinite(b.best.metric):
        best_text += f"; best single result {b.best.metric:.4g} (trial {b.best.trial})"
    failed_text = f", {len(failures)} failed runs" if failures else ""
    fig.suptitle(f"evoq experiment {exp.name}: {len(done)} completed{failed_text}, {best_text}")
    out = Path(output)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
