"""Following experiments as their logs grow: one incremental fold per watched experiment.

A :class:`Watcher` reads its experiment's log once from the start and then follows it — a Redis
Stream with ``XREAD BLOCK`` (:meth:`RedisLog.wait`), an embedded log file by checking its size
every 0.1 s — and folds each new record into a :class:`~evoq.report.TrialTable` (the reducer's
``StateBuilder`` plus the trial rows of ``evoq trials``), so that a page never re-reads the log.
A :class:`LiveAudit` runs :func:`~evoq.audit.audit_entries` over the same records in a thread of
its own, as they arrive. A :class:`Probe` reads what the log does not hold — heartbeat keys and
RQ workers — with read-only commands only.

Nothing here writes to Redis or to a file, and nothing imports trial code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from ..audit import AuditReport, audit_entries
from ..codec import CodecError, decode
from ..controller import fetch_job
from ..events import TrialCompleted, TrialFailed, TrialSubmitted
from ..filelog import FileLog, FrameError, TornTailWarning
from ..keys import Keys
from ..redislog import RedisLog
from ..reducer import InvalidLogError
from ..report import TrialTable

log = logging.getLogger("evoq.dashboard")

POLL_S = 0.1
"""How often an embedded log file's size is checked."""
BLOCK_MS = 1000
"""How long one ``XREAD BLOCK`` waits before the watcher checks whether it should stop."""
BATCH = 5000
"""Records folded (and announced to the pages) at most at once while catching up."""


class Point(NamedTuple):
    """One run that ended and counted, in log order: a result (``kind == ""``) or a failure."""

    trial: int
    attempt: int
    at: float
    metric: float | None
    kind: str


class Foreground:
    """Counts the page builds in progress, so that background work (the live audit, which
    re-derives every decision) waits for them: pages come first."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a page build in progress for the duration of the block."""
        with self._lock:
            self._n += 1
        try:
            yield
        finally:
            with self._lock:
                self._n -= 1

    def active(self) -> bool:
        """Whether a page build is in progress."""
        return self._n > 0


class LiveAudit:
    """:func:`~evoq.audit.audit_entries` over a growing log, in a thread of its own.

    The watcher hands it each batch of records it read (:meth:`feed`); the audit consumes them
    in order and stops at its first finding, as ``evoq audit`` does. Nothing is re-read. While
    ``pause()`` is true (the log is being caught up, a page is being built) it waits.
    """

    PAUSE_EVERY = 256
    """Records audited between two looks at ``pause()``."""

    def __init__(self, chain: str, pause: Callable[[], bool] = lambda: False) -> None:
        self.pause = pause
        self.report = AuditReport(chain=chain)
        self.fed = 0
        self.checked = 0
        self.finished = False
        self._queue: queue.SimpleQueue[list[tuple[Any, bytes]] | BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="evoq-dashboard-audit", daemon=True)
        self._thread.start()

    def feed(self, entries: list[tuple[Any, bytes]]) -> None:
        """Queue records read from the log (in log order)."""
        if not self.finished:
            self.fed += len(entries)
            self._queue.put(entries)

    def fail(self, exc: BaseException) -> None:
        """The log could not be read past this point (e.g. a broken chain): the audit reports it."""
        if not self.finished:
            self._queue.put(exc)

    def close(self) -> None:
        """Stop the audit thread (its report keeps what it found)."""
        self._queue.put(None)

    def _entries(self) -> Iterator[tuple[Any, bytes]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            for i, entry in enumerate(item):
                if i % self.PAUSE_EVERY == 0:
                    while self.pause():
                        time.sleep(0.01)
                self.checked += 1
                yield entry

    def _run(self) -> None:
        try:
            audit_entries(self._entries(), self.report)
        except Exception:  # the audit must never take the dashboard down; say it stopped
            log.exception("the live audit stopped")
        finally:
            self.finished = True

    @property
    def pending(self) -> int:
        """Records read but not audited yet."""
        return max(0, self.fed - self.checked)


class Watcher:
    """One experiment's log, followed and folded incrementally (see the module docstring).

    Attributes read by the pages (under :attr:`lock`): ``table`` (the fold: state and trial
    rows), ``children`` (trial -> its children), ``points`` (every counted end of a run, in log
    order), ``failure_kinds`` (``(trial, attempt)`` -> the kind of each counted failure),
    ``results_at`` (``(time, results)`` after each recent result, for the ETA),
    ``first_at``/``last_at`` (time stamps of the first and last record), ``version`` (bumped
    after each fold), ``generation`` (bumped when the log was replaced and the fold started
    over), ``error`` (why the log cannot be followed right now, or None).
    """

    def __init__(
        self,
        where: str,
        name: str,
        source: RedisLog | FileLog,
        *,
        probe: Probe | None = None,
        foreground: Foreground | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.where, self.name, self.source, self.probe = where, name, source, probe
        self.foreground = foreground if foreground is not None else Foreground()
        self.poll_s = poll_s
        self.lock = threading.RLock()
        self.ready = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        self._reset()
        self._thread = threading.Thread(target=self._run, name=f"evoq-dashboard-{name}", daemon=True)

    def _reset(self) -> None:
        with self.lock:
            self.table = TrialTable()
            self.children: dict[int, list[int]] = {}
            self.points: list[Point] = []
            self.points_text: list[str] = []  # ``points`` as JSON, filled by the dashboard's pages
            self.failure_kinds: dict[tuple[int, int], str] = {}
            self.results_at: deque[tuple[float, int]] = deque(maxlen=256)
            self.first_at: float | None = None
            self.last_at: float | None = None
            self.version = getattr(self, "version", 0) + 1
            self.generation = getattr(self, "generation", 0) + 1
            old = getattr(self, "audit", None)
            if old is not None:
                old.close()
            chain = (
                "verified as read (hash-chained file)"
                if isinstance(self.source, FileLog)
                else "absent (a live Redis stream; `evoq export` writes a chained file)"
            )
            self.audit = LiveAudit(chain, pause=self._audit_should_wait)

    def _audit_should_wait(self) -> bool:
        return (not self.ready.is_set() and not self._stop.is_set()) or self.foreground.active()

    # -- life -------------------------------------------------------------------------------
    def start(self) -> Watcher:
        """Start following the log (a daemon thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (returns within about a second)."""
        self._stop.set()
        self.audit.close()
        if self._thread.is_alive():
            self._thread.join(timeout=BLOCK_MS / 1000 + 2)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from the watcher's thread) after every change; return the
        function that unsubscribes it."""
        with self.lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self.lock, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def _notify(self) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    # -- folding ----------------------------------------------------------------------------
    def fold(self, entries: Sequence[tuple[Any, bytes]]) -> None:
        """Fold records ``(position, bytes)`` read from the log, in order (rejected records are
        counted in the state exactly as :meth:`evoq.sources.Source.load` counts them)."""
        if not entries:
            return
        with self.lock:
            for pos, data in entries:
                self._fold_one(pos, data)
            self.version += 1
        self.audit.feed(list(entries))
        self._notify()

    def _fold_one(self, pos: Any, data: bytes) -> None:
        table = self.table
        b = table.builder
        try:
            event = decode(data, offset=pos)
        except CodecError as exc:
            b.events += 1
            b.reject(pos, exc.reason)
            return
        results = b.results
        try:
            row = table.add(event)
        except InvalidLogError as exc:
            b.reject(pos, str(exc))
            return
        at = event.at
        if at:
            if self.first_at is None:
                self.first_at = at
            self.last_at = at
        if row is None:
            return
        if isinstance(event, TrialSubmitted):
            if event.attempt == 0 and event.parent is not None:
                self.children.setdefault(event.parent, []).append(event.trial)
        elif isinstance(event, TrialCompleted | TrialFailed):
            if row.status == "completed":
                self.points.append(Point(event.trial, event.attempt, event.at, row.metric, ""))
            else:
                kind = event.kind if isinstance(event, TrialFailed) else "invalid_metric"
                self.points.append(Point(event.trial, event.attempt, event.at, None, kind))
                self.failure_kinds[(event.trial, event.attempt)] = kind
            if b.results != results:
                self.results_at.append((event.at, b.results))

    # -- following --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if isinstance(self.source, RedisLog):
                self._follow_stream(self.source)
            else:
                self._follow_file(self.source)
        except Exception as exc:  # keep the server up; the page shows what happened
            log.exception("watcher of %s stopped", self.name)
            self._set_error(f"stopped following the log: {type(exc).__name__}: {exc}")
        finally:
            self.ready.set()

    def _set_error(self, message: str | None) -> None:
        if message != self.error:
            self.error = message
            with self.lock:
                self.version += 1
            self._notify()

    def _follow_stream(self, stream: RedisLog) -> None:
        after: str | None = None
        caught_up = False
        while not self._stop.is_set():
            try:
                if not caught_up:
                    for batch in stream.read_batches(after):
                        self.fold(batch)
                        after = batch[-1][0]
                    caught_up = True
                    self.ready.set()
                entries = stream.wait(after, BLOCK_MS)
                self._set_error(None)
                if entries:
                    self.fold(entries)
                    after = entries[-1][0]
            except redis.RedisError as exc:
                self._set_error(f"cannot read the stream: {exc}")
                self.ready.set()
                caught_up = False
                self._stop.wait(1.0)

    def _follow_file(self, file: FileLog) -> None:
        after: int | None = None
        seen: tuple[int, int] | None = None  # (inode, size) at the last read
        broken = False
        while not self._stop.is_set():
            try:
                st = os.stat(file.path)
            except FileNotFoundError:
                self._set_error(f"{file.path} does not exist (deleted?)")
                self.ready.set()
                self._stop.wait(self.poll_s)
                continue
            now = (st.st_ino, st.st_size)
            if seen is not None and (now[0] != seen[0] or now[1] < seen[1]):
                after, broken = None, False  # the file was replaced (deleted and run again): start over
                self._reset()
                self._notify()
            if now != seen and not broken:
                seen = now
                batch: list[tuple[int, bytes]] = []
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", TornTailWarning)  # a write in progress
                        for entry in file.read(after):
                            batch.append(entry)
                            if len(batch) >= BATCH:
                                self.fold(batch)
                                after, batch = batch[-1][0], []
                    self._set_error(None)
                except FrameError as exc:
                    broken = True  # nothing after a damaged frame can be trusted
                    self.audit.fail(exc)
                    self._set_error(f"the log file is damaged: {exc}")
                except OSError as exc:
                    seen = None
                    self._set_error(f"cannot read {file.path}: {exc.strerror or exc}")
                if batch:
                    self.fold(batch)
                    after = batch[-1][0]
            self.ready.set()
            self._stop.wait(self.poll_s)


# -- probes: what the log does not hold ---------------------------------------------------------
@dataclass(frozen=True)
class Heartbeat:
    """A running trial's heartbeat key: ``ttl_left`` seconds before it expires (None: no key),
    ``ttl`` the TTL the controller asked for (None: unknown), ``age`` seconds since the last beat
    (``ttl - ttl_left``, None when either is unknown), ``queue`` the job's queue."""

    ttl_left: float | None
    ttl: float | None
    queue: str | None

    @property
    def age(self) -> float | None:
        """Seconds since the worker last refreshed the key."""
        if self.ttl_left is None or self.ttl is None:
            return None
        return max(0.0, self.ttl - self.ttl_left)


@dataclass(frozen=True)
class WorkerInfo:
    """An RQ worker registered on a queue, from its worker hash."""

    name: str
    state: str
    hostname: str | None
    pid: int | None
    queues: tuple[str, ...]
    last_heartbeat: float | None
    birth: float | None
    successful: int
    failed: int


class Probe:
    """Read-only looks at an experiment's Redis: heartbeat keys (``PTTL``), the runs' RQ jobs
    (``HGETALL``, for the heartbeat TTL and the queue) and the RQ workers of its queues
    (``SMEMBERS`` and ``HGETALL``; unlike ``Worker.all``, which drops dead workers from RQ's
    sets, this writes nothing). Answers are cached for ``max_age`` seconds, so that any number
    of pages cost one round of reads.
    """

    def __init__(self, client: Any, name: str, queues: Sequence[str], *, max_age: float = 0.9) -> None:
        self.client = client
        self.keys = Keys(name)
        self.queues = tuple(queues)
        self.max_age = max_age
        self._jobs: dict[tuple[int, int], tuple[float | None, str | None]] = {}
        self._lock = threading.Lock()
        self._cache: tuple[float, frozenset[tuple[int, int]], dict[tuple[int, int], Heartbeat], list[WorkerInfo]] | None = None  # fmt: skip
        self.error: str | None = None

    def look(
        self, runs: Sequence[tuple[int, int]]
    ) -> tuple[dict[tuple[int, int], Heartbeat], list[WorkerInfo]]:
        """Heartbeats of ``runs`` (``(trial, attempt)``) and the workers of the queues."""
        wanted = frozenset(runs)
        with self._lock:
            cached = self._cache
            if cached is not None and cached[1] == wanted and time.monotonic() - cached[0] < self.max_age:
                return cached[2], cached[3]
            try:
                beats = self._heartbeats(sorted(wanted))
                workers = self._workers({q for _, q in self._jobs.values() if q} | set(self.queues))
                self.error = None
            except redis.RedisError as exc:
                self.error = f"cannot read heartbeats and workers: {exc}"
                return {}, []
            self._cache = (time.monotonic(), wanted, beats, workers)
            return beats, workers

    def _heartbeats(self, runs: list[tuple[int, int]]) -> dict[tuple[int, int], Heartbeat]:
        from rq.exceptions import NoSuchJobError

        for run in runs:
            if run not in self._jobs:
                try:
                    job = fetch_job(self.client, self.keys.job_id(*run))
                    payload = job.args[0] if job.args else {}
                    ttl = payload.get("heartbeat_ttl") if isinstance(payload, dict) else None
                    self._jobs[run] = (float(ttl) if isinstance(ttl, int | float) else None, job.origin)
                except NoSuchJobError:
                    self._jobs[run] = (None, None)
                except redis.RedisError:  # Redis away: look again next time, as before
                    raise
                except Exception:  # a hash someone else wrote: shown without its heartbeat TTL
                    self._jobs[run] = (None, None)
        for old in [r for r in self._jobs if r not in runs]:
            del self._jobs[old]
        pipe = self.client.pipeline(transaction=False)
        for run in runs:
            pipe.pttl(self.keys.heartbeat(*run))
        answers = pipe.execute() if runs else []
        beats = {}
        for run, ms in zip(runs, answers, strict=True):
            ttl, origin = self._jobs[run]
            beats[run] = Heartbeat(ms / 1000 if isinstance(ms, int) and ms >= 0 else None, ttl, origin)
        return beats

    def _workers(self, queues: set[str]) -> list[WorkerInfo]:
        from rq import Queue
        from rq.utils import decode_redis_hash, utcparse
        from rq.worker import Worker

        keys: set[str] = set()
        for q in sorted(queues):
            keys |= set(Worker.all_keys(queue=Queue(q, connection=self.client)))
        ordered = sorted(keys)
        pipe = self.client.pipeline(transaction=False)
        for k in ordered:
            pipe.hgetall(k)
        infos = []
        for key, raw in zip(ordered, pipe.execute() if ordered else [], strict=True):
            if not raw:
                continue  # registered, but its hash expired: a dead worker RQ has not swept yet
            data = decode_redis_hash(raw, decode_values=True)
            if data.get("death"):
                continue

            def when(field: str, data: dict[str, Any] = data) -> float | None:
                try:
                    return float(utcparse(data[field]).timestamp()) if data.get(field) else None
                except (ValueError, TypeError):
                    return None

            pid = data.get("pid")
            infos.append(
                WorkerInfo(
                    name=key.split(":", 2)[-1],
                    state=str(data.get("state") or "?"),
                    hostname=data.get("hostname") or None,
                    pid=int(pid) if isinstance(pid, str) and pid.isdigit() else None,
                    queues=tuple(q for q in str(data.get("queues") or "").split(",") if q),
                    last_heartbeat=when("last_heartbeat"),
                    birth=when("birth"),
                    successful=_int(data.get("successful_job_count")),
                    failed=_int(data.get("failed_job_count")),
                )
            )
        return infos


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
