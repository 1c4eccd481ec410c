"""``evoq plot``: every trial's metric and the best so far, by trial number and by wall clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .events import Event
from .reducer import StateBuilder
from .report import trial_rows


def plot(events: Sequence[Event], output: str | Path) -> Path:
    """Write a PNG with two panels: metrics against trial number (population members marked,
    re-evaluations marked, the best single result so far as a line) and against wall-clock time
    since the experiment started. The title names the incumbent (best mean, with its number of
    evaluations) and the best single result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = StateBuilder()
    b.add_all(events)
    exp, st = b.experiment, b.strategy
    if exp is None or st is None:
        raise ValueError("the log has no experiment_created record")
    rows = sorted(
        (r for r in trial_rows(events).values() if r.status == "completed" and r.metric is not None),
        key=lambda r: r.trial,
    )
    members = {ind.trial for ind in b.population}
    reevals = {r.trial for r in rows if r.phase == "reeval"}
    t0 = min((e.at for e in events if e.at), default=0.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    by_end = sorted(rows, key=lambda r: r.ended_at or 0.0)
    panels = (
        (axes[0], rows, [float(r.trial) for r in rows], "trial number"),
        (
            axes[1],
            by_end,
            [((r.ended_at or t0) - t0) / 60.0 for r in by_end],
            "wall-clock minutes since start",
        ),
    )
    better = max if st.maximize else min
    for ax, ordered, xs, label in panels:
        ys = [float(r.metric) for r in ordered if r.metric is not None]
        in_pop = [r.trial in members for r in ordered]
        again = [r.trial in reevals for r in ordered]
        plain = [not p and not a for p, a in zip(in_pop, again, strict=True)]
        ax.scatter([x for x, p in zip(xs, plain, strict=True) if p],
                   [y for y, p in zip(ys, plain, strict=True) if p],
                   s=10, c="0.6", label="trial")  # fmt: skip
        if reevals:
            ax.scatter([x for x, a in zip(xs, again, strict=True) if a],
                       [y for y, a in zip(ys, again, strict=True) if a],
                       s=14, c="tab:green", marker="x", label="re-evaluation")  # fmt: skip
        ax.scatter([x for x, p in zip(xs, in_pop, strict=True) if p],
                   [y for y, p in zip(ys, in_pop, strict=True) if p],
                   s=18, c="tab:orange", label="in final population")  # fmt: skip
        best: list[float] = []
        for y in ys:
            best.append(y if not best else better(best[-1], y))
        ax.step(xs, best, where="post", c="tab:blue", lw=2, label="best single result so far")
        ax.set_xlabel(label)
        ax.set_ylabel("metric")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right" if st.maximize else "upper right")
    inc = b.incumbent
    best_text = (
        f"incumbent (best mean) {inc.metric:.4g} over {inc.evaluations} evaluation"
        f"{'s' if inc.evaluations != 1 else ''} (trial {inc.trial})"
        if inc is not None
        else ""
    )
    if b.best and math.isfinite(b.best.metric):
        best_text += f"; best single result {b.best.metric:.4g} (trial {b.best.trial})"
    fig.suptitle(f"evoq experiment {exp.name}: {len(rows)} completed, {best_text}")
    out = Path(output)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
