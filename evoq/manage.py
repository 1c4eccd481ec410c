"""Experiment management: list the experiments a Redis and the embedded folder hold, delete one.

Both work on Redis (the experiments evoq's controllers registered in ``evoq:experiments``) and on
the embedded logs (``.evoq/NAME.evoqlog``). Deleting refuses an experiment that is being run (a
live lease in Redis, a held lock for an embedded run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq.exceptions import NoSuchJobError

from .controller import fetch_job
from .embedded import is_locked, lock_path
from .events import TrialSubmitted
from .keys import EXPERIMENTS, Keys, check_name
from .redislog import stream_id
from .reducer import State
from .report import summary
from .sources import Source, SourceError, embedded_log_path, file_source, redis_source

KnownState = Callable[[str, str], State | None]
"""``(where, name) -> State | None``: the state of an experiment already folded elsewhere."""


def _row(src: Source, where: str, last_at: float | None, known: KnownState | None = None) -> dict[str, Any]:
    state = known(where, src.name or "") if known is not None else None
    if state is not None:
        return experiment_row(src.name, where, state, last_at)
    try:
        state = src.load().state
    except SourceError as exc:
        return {"name": src.name, "where": where, "status": "unreadable", "results": 0, "cycles": None,
                "best": None, "failed": 0, "running": 0, "rejected": 0, "last_at": last_at, "error": str(exc)}  # fmt: skip
    return experiment_row(src.name, where, state, last_at)


def experiment_row(name: str | None, where: str, state: State, last_at: float | None) -> dict[str, Any]:
    """The :func:`list_experiments` row of an experiment in ``state``."""
    data = summary(state)
    best = data["best"]["metric"] if data["best"] else None
    return {
        "name": name,
        "where": where,
        "status": data["status"],
        "results": data["results"],
        "cycles": data["cycles"],
        "best": best,
        "failed": data["failed"],
        "running": data["running"],
        "rejected": data["rejected"],
        "last_at": last_at,
    }


def list_experiments(
    client: redis.Redis | None, log_dir: Path, *, known: KnownState | None = None
) -> list[dict[str, Any]]:
    """One row per experiment: ``name, where (redis|embedded), status, results, cycles, best,
    failed, running, rejected, last_at`` (Unix time of the last record, or None).

    ``known(where, name)`` may give the state of an experiment the caller already folds (the
    dashboard follows some): its log is then not read again."""
    rows = []
    if client is not None:
        names = sorted(n.decode(errors="replace") for n in client.smembers(EXPERIMENTS))  # type: ignore[union-attr]
        for name in names:
            try:
                src = redis_source(client, name)
            except SourceError:
                continue  # registered, then deleted by hand
            last: Any = client.xrevrange(Keys(name).stream, count=1)
            last_at = int(stream_id(last[0][0]).split("-")[0]) / 1000 if last else None
            rows.append(_row(src, "redis", last_at, known))
    folder = Path(log_dir)
    if folder.is_dir():
        for path in sorted(folder.glob("*.evoqlog")):
            src = file_source(path)
            src.name = path.stem
            rows.append(_row(src, "embedded", path.stat().st_mtime, known))
    return rows


def delete_experiment(name: str, client: redis.Redis | None, log_dir: Path) -> str:
    """Delete experiment ``name``; return what was deleted, in a few words.

    Raises:
        SourceError: no such experiment, or it is being run right now.
    """
    try:
        keys = Keys(check_name(name))
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    if client is None:
        path = embedded_log_path(log_dir, name)
        if not path.exists():
            raise SourceError(f"no embedded experiment {name!r} ({path} does not exist)")
        if is_locked(path):
            raise SourceError(
                f"experiment {name!r} is being run by an evoq process on this machine; stop it first"
            )
        path.unlink()
        lock_path(path).unlink(missing_ok=True)
        return f"removed {path}"
    holder = client.get(keys.lease)
    if holder is not None:
        who = holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder)
        raise SourceError(f"experiment {name!r} is being run by controller {who}; stop it first")
    src = redis_source(client, name)
    events = src.load().events
    runs = {(e.trial, e.attempt) for e in events if isinstance(e, TrialSubmitted)}
    jobs = 0
    for trial, attempt in sorted(runs):
        try:
            fetch_job(client, keys.job_id(trial, attempt)).delete()
            jobs += 1
        except NoSuchJobError:
            continue
    doomed = list(client.scan_iter(match=f"{keys.prefix}:*", count=1000))
    if doomed:
        client.delete(*doomed)
    client.srem(EXPERIMENTS, name)
    return f"{len(doomed)} keys (its log, lease and heartbeats) and {jobs} RQ jobs"
