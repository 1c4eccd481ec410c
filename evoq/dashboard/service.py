"""The dashboard's data side, without HTTP: which experiments exist, one watcher per opened
experiment, and the page data built from them.

The list of experiments is :func:`evoq.manage.list_experiments` (what ``evoq list`` prints),
refreshed in the background at most every few seconds while someone looks at it; the rows of the
experiments being watched are replaced by their live values (:func:`evoq.manage.experiment_row`
of the watcher's state). An experiment's page data comes from its :class:`Watcher`'s fold
through :mod:`evoq.dashboard.views`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ..embedded import is_locked
from ..errors import EvoqError
from ..filelog import FileLog
from ..keys import DEFAULT_QUEUE, EXPERIMENTS, Keys, check_name
from ..manage import experiment_row, list_experiments
from ..redislog import RedisLog
from ..reducer import State
from ..report import clock_text, metric_text, summary
from ..sources import SourceError, embedded_log_path, redis_source
from . import views
from .watch import Foreground, Probe, Watcher

LIST_MAX_AGE = 5.0
"""Seconds a listing of the experiments is served before it is read again (in the background)."""
LINEAGE_SHOWN = 100
"""Ancestors of the best trial listed on the experiment's page (the trial pages go further)."""


class DashboardError(EvoqError):
    """A dashboard cannot start or serve (port in use, bad bind address, ...)."""


class UnknownExperiment(EvoqError):
    """No such experiment here (the message says where it was looked for)."""


@dataclass
class Listing:
    """The experiments as last listed, and when."""

    rows: list[dict[str, Any]]
    at: float
    error: str | None = None


class Dashboard:
    """Experiments of a Redis (``client``) and of an embedded log folder (``log_dir``).

    Args:
        client: the Redis to show (None: only embedded logs).
        log_dir: the folder of embedded logs (``.evoq``).
        queues: the RQ queues whose workers are shown (also each running job's own queue).
        embedded_client: the in-process Redis of an embedded run served by ``evoq run
            --dashboard`` (its heartbeats and worker threads); ``embedded_name`` names that run.
    """

    def __init__(
        self,
        client: redis.Redis | None,
        log_dir: Path,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        embedded_client: Any = None,
        embedded_name: str | None = None,
    ) -> None:
        self.client = client
        self.log_dir = Path(log_dir)
        self.queues = tuple(queues)
        self.embedded_client = embedded_client
        self.embedded_name = embedded_name
        self.closing = threading.Event()
        self.foreground = Foreground()
        self._watchers: dict[tuple[str, str], Watcher] = {}
        self._lock = threading.Lock()
        self._listing: Listing | None = None
        self._listing_lock = threading.Lock()
        self._refreshing = False

    # -- experiments --------------------------------------------------------------------------
    def experiments(self, max_age: float = LIST_MAX_AGE) -> Listing:
        """Every experiment (rows of :func:`~evoq.manage.list_experiments`), live rows for the
        watched ones. The first call reads the logs; later ones get the last listing and, when it
        is older than ``max_age``, start a new one in the background."""
        with self._listing_lock:
            listing = self._listing
            stale = listing is None or time.monotonic() - listing.at > max_age
            start = stale and listing is not None and not self._refreshing
            if start:
                self._refreshing = True
        if listing is None:
            listing = self._list()
        elif start:
            threading.Thread(target=self._list, name="evoq-dashboard-list", daemon=True).start()
        return Listing(self._overlay(listing.rows), listing.at, listing.error)

    def _list(self) -> Listing:
        try:
            rows = list_experiments(self.client, self.log_dir, known=self._known)
            listing = Listing(rows, time.monotonic())
        except Exception as exc:  # any log may be hostile: the listing goes on, saying why
            old = self._listing
            reason = (
                str(exc)
                if isinstance(exc, redis.RedisError | SourceError)
                else f"{type(exc).__name__}: {exc}"
            )
            listing = Listing(
                old.rows if old else [], time.monotonic(), f"cannot list the experiments: {reason[:300]}"
            )
        with self._listing_lock:
            self._listing = listing
            self._refreshing = False
        return listing

    def _known(self, where: str, name: str) -> State | None:
        """The state of an experiment being watched (its log is not read again to list it)."""
        with self._lock:
            w = self._watchers.get((where, name))
        if w is None or not w.ready.is_set() or w.error is not None:
            return None
        with w.lock:
            return w.table.builder.freeze() if w.table.builder.experiment is not None else None

    def _overlay(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            state = self._known(row["where"], row["name"]) if row["name"] else None
            if state is not None:
                with self._lock:
                    w = self._watchers[(row["where"], row["name"])]
                last = w.last_at if row["where"] == "redis" else row["last_at"]
                row = experiment_row(row["name"], row["where"], state, last)
            out.append(row)
        return out

    def watcher(self, where: str, name: str) -> Watcher:
        """The watcher of experiment ``name`` in ``where`` (``redis`` or ``embedded``), started
        on first use.

        Raises:
            UnknownExperiment: no such experiment here.
        """
        key = (where, name)
        with self._lock:
            w = self._watchers.get(key)
            if w is not None:
                return w
        try:
            check_name(name)
        except ValueError as exc:
            raise UnknownExperiment(str(exc)) from None
        if where == "redis":
            if self.client is None:
                raise UnknownExperiment(
                    "this dashboard shows no Redis (start it with --redis-url or REDIS_URL)"
                )
            try:
                src = redis_source(self.client, name)
            except SourceError as exc:
                raise UnknownExperiment(str(exc)) from None
            assert isinstance(src.log, RedisLog)
            w = Watcher(
                where, name, src.log, probe=Probe(self.client, name, self.queues), foreground=self.foreground
            )
        elif where == "embedded":
            path = embedded_log_path(self.log_dir, name)
            if not path.is_file():
                raise UnknownExperiment(f"no embedded experiment {name!r} ({path} does not exist)")
            probe = None
            if self.embedded_client is not None and name == self.embedded_name:
                probe = Probe(self.embedded_client, name, self.queues)
            w = Watcher(where, name, FileLog(path), probe=probe, foreground=self.foreground)
        else:
            raise UnknownExperiment(f"no place {where!r} (redis or embedded)")
        with self._lock:
            if key in self._watchers:  # another request started it meanwhile
                return self._watchers[key]
            self._watchers[key] = w
        return w.start()

    def follow_live(self) -> list[Watcher]:
        """Start following every experiment a controller is running right now — a held lease
        in Redis, a held lock on an embedded log — so that its page opens at once; return their
        watchers. Reads no log to find them."""
        found: list[tuple[str, str]] = []
        try:
            if self.client is not None:
                names = sorted(n.decode(errors="replace") for n in self.client.smembers(EXPERIMENTS))  # type: ignore[union-attr]
                pipe = self.client.pipeline(transaction=False)
                valid = [n for n in names if _valid(n)]
                for n in valid:
                    pipe.exists(Keys(n).lease)
                found += [("redis", n) for n, held in zip(valid, pipe.execute(), strict=True) if held]
        except redis.RedisError:
            pass  # opened on demand once Redis answers
        if self.log_dir.is_dir():
            found += [("embedded", p.stem) for p in sorted(self.log_dir.glob("*.evoqlog")) if is_locked(p)]
        started = []
        for where, name in found:
            try:
                started.append(self.watcher(where, name))
            except (UnknownExperiment, redis.RedisError):
                continue  # deleted meanwhile, or Redis away
        return started

    def follow_when_it_exists(self, where: str, name: str) -> None:
        """Start following experiment ``name`` as soon as its log exists (a new run creates it
        a moment after the dashboard starts), from a background thread."""

        def wait_and_follow() -> None:
            while not self.closing.wait(0.2):
                try:
                    self.watcher(where, name)
                    return
                except (UnknownExperiment, redis.RedisError):
                    continue

        threading.Thread(target=wait_and_follow, name="evoq-dashboard-follow", daemon=True).start()

    def close(self) -> None:
        """Stop every watcher."""
        self.closing.set()
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for w in watchers:
            w.stop()

    # -- page data ----------------------------------------------------------------------------
    def shared(self, w: Watcher) -> dict[str, Any]:
        """What every page of ``w``'s experiment shows at its current version (not the parts
        that age with the clock): ``version, summary, progress inputs, failures, lineage,
        params, population``. Computed under the watcher's lock."""
        with w.lock:
            b = w.table.builder
            state = b.freeze()
            data = summary(state)
            rows = w.table.rows
            best = data["best"]["trial"] if data["best"] else None
            lineage = views.lineage_view(rows, best)
            return {
                "version": w.version,
                "summary": data,
                "results_at": list(w.results_at),
                "first_at": w.first_at,
                "last_at": w.last_at,
                "failures": views.failures_view(data),
                "lineage": lineage[:LINEAGE_SHOWN],
                "lineage_more": max(0, len(lineage) - LINEAGE_SHOWN),
                "params": views.params_view(state.experiment, state.strategy),
                "population": views.population_json(data["population"], rows),
                "population_rows": [
                    {
                        "trial": p["trial"],
                        "metric": metric_text(p["metric"]),
                        "config": ", ".join(f"{k}={views.value_text(v)}" for k, v in p["config"].items()),
                    }
                    for p in reversed(data["population"])
                ],
                "maximize": state.strategy.maximize if state.strategy else True,
                "points": len(w.points),
                "generation": w.generation,
                "error": w.error,
            }

    def live(self, w: Watcher, shared: dict[str, Any], now: float) -> dict[str, Any]:
        """The parts of a page that age with the clock: progress (rate, ETA), runs in flight
        with their heartbeats, workers, the audit. Reads the probes (Redis) outside the lock."""
        data = shared["summary"]
        in_flight = data["in_flight"]
        beats = workers = None
        probe_error = None
        if w.probe is not None:
            beats, found = w.probe.look([(r["trial"], r["attempt"]) for r in in_flight])
            workers = views.workers_view(found, in_flight, now)
            probe_error = w.probe.error
        audit = w.audit
        return {
            "progress": views.progress_view(data, shared["results_at"], now),
            "running": views.running_view(in_flight, beats, now),
            "workers": workers,
            "probe_error": probe_error,
            "audit": views.audit_view(audit.report, audit.checked, audit.fed, audit.finished),
            "now": clock_text(now),
        }

    def points(self, w: Watcher, start: int, generation: int) -> tuple[list[list[Any]], int, int, bool]:
        """The counted ends of runs for the charts from index ``start`` of fold ``generation``:
        ``(points, count, generation, reset)``; ``reset`` when the client must drop what it has
        (the log was replaced since)."""
        with w.lock:
            reset = generation != w.generation or start > len(w.points)
            pts = w.points if reset else w.points[start:]
            return views.points_json(pts), len(w.points), w.generation, reset

    def points_text(self, w: Watcher) -> tuple[str, int, int]:
        """Every counted end of a run for the charts (:meth:`points` from the start) as JSON
        text safe in a page, with the count and the fold generation. Each point is encoded
        once: a page of a 100k-event experiment does not encode 33k points again."""
        with w.lock:
            done = w.points_text
            done.extend(views.json_for_html(row) for row in views.points_json(w.points[len(done) :]))
            return "[" + ",".join(done) + "]", len(w.points), w.generation

    def trial(self, w: Watcher, trial: int, now: float) -> dict[str, Any] | None:
        """One trial's page data (None for a trial the log does not have)."""
        with w.lock:
            b = w.table.builder
            return views.trial_view(
                trial,
                w.table.rows,
                w.table.earlier,
                w.children,
                failure_kinds=w.failure_kinds,
                population=[ind.trial for ind in b.population],
                best=b.best.trial if b.best is not None else None,
                now=now,
            )


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True
