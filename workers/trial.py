"""The job entry that runs one trial inside ``rq worker`` and reports its outcome itself.

RQ callbacks are not a reliable way to learn that a trial ended (they do not run when a work
horse is killed), so this function appends ``TrialStarted`` and then exactly one of
``TrialCompleted`` / ``TrialFailed`` to the experiment's stream. While the trial runs, a thread
keeps the run's heartbeat key alive with a TTL; the controller declares the run lost when the
key expires.

Before anything runs, the payload is checked (:mod:`workers.payload`), the job id must be the
run's, and the experiment must exist: its creation record gives the schema version the worker
writes in, so a newer worker never writes a record an older controller cannot read. A trial the
worker's allowlist refuses, or cannot import, is reported as ``refused`` (the controller runs it
again, elsewhere) — nothing is imported for a refused path. Messages are cut to
:data:`MAX_MESSAGE` characters: no record is ever over the codec's size limit.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgpack
import redis
from rq import get_current_job
from rq.exceptions import ShutDownImminentException
from rq.timeouts import BaseTimeoutException

from evoq.codec import MSGPACK_UNPACK, SCHEMA_VERSION, TAGS, encode
from evoq.events import Event, ExperimentCreated, TrialCompleted, TrialFailed, TrialProgressed, TrialStarted
from evoq.keys import STREAM_FIELD, Keys
from evoq.loader import Allowlist, TrialLoadError, load_trial
from evoq.metric import InvalidMetricError, parse_metric
from evoq.redislog import RedisLog
from evoq.trialspec import CommandTrial, TrialSpecError, parse_trial

from .command import run_command
from .payload import PAYLOAD_VERSION, Payload, PayloadError, make_payload, parse_payload
from .settings import allowlist, heartbeat_interval

__all__ = ["PAYLOAD_VERSION", "Heartbeat", "execute", "make_payload", "run_trial"]

rq_log = logging.getLogger("rq.worker")  # the worker's own log: the failure shows where RQ says "Job OK"
_TRACEBACK_LINES = 12
MAX_MESSAGE = 8192
"""Characters of a failure message kept (the tail of a traceback is what matters)."""
MAX_WORKER_NAME = 200
PROGRESS_INTERVAL = 1.0
PROGRESS_BURST = 20
MAX_PROGRESS = 10_000


class Heartbeat:
    """Refreshes ``key`` (with a TTL) from a daemon thread until stopped."""

    def __init__(self, conn: redis.Redis, key: str, ttl: float, value: str) -> None:
        self.conn, self.key, self.value = conn, key, value
        self.ttl_ms = max(int(ttl * 1000), 1)
        self.interval = heartbeat_interval(ttl)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"evoq-heartbeat-{key}", daemon=True)

    def start(self) -> Heartbeat:
        self.conn.set(self.key, self.value, px=self.ttl_ms)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # Redis briefly away: the next beat retries; a long gap means "lost"
            with contextlib.suppress(redis.RedisError):
                self.conn.set(self.key, self.value, px=self.ttl_ms)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self.conn.delete(self.key)


def _short_traceback(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-_TRACEBACK_LINES:])


class Progress:
    """Intermediate results, rate-limited by a token bucket: bursts of up to
    :data:`PROGRESS_BURST` events, then one per :data:`PROGRESS_INTERVAL` seconds (a value that
    finds no token waits, replaced by newer ones, and is sent with the next token or at the end);
    at most :data:`MAX_PROGRESS` events per run."""

    def __init__(self, send: Callable[[int, float], None]) -> None:
        self.send = send
        self.sent = 0
        self.tokens = float(PROGRESS_BURST)
        self.stamp = time.monotonic()
        self.pending: tuple[int, float] | None = None
        self.lock = threading.Lock()

    def __call__(self, step: int, value: float) -> None:
        with self.lock:
            self.pending = (step, value)
            now = time.monotonic()
            self.tokens = min(PROGRESS_BURST, self.tokens + (now - self.stamp) / PROGRESS_INTERVAL)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                self._send_pending()

    def _send_pending(self) -> None:
        if self.pending is None or self.sent >= MAX_PROGRESS:
            return
        step, value = self.pending
        self.pending = None
        self.sent += 1
        with contextlib.suppress(redis.RedisError):
            self.send(step, value)

    def flush(self) -> None:
        """Send the last value held back by the rate limit."""
        with self.lock:
            self._send_pending()


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` cut to ``limit`` characters, keeping its first line and its end."""
    if len(message) <= limit:
        return message
    first = message.split("\n", 1)[0][: limit // 4]
    tail = message[-(limit - len(first) - 40) :]
    return f"{first}\n... ({len(message) - len(first) - len(tail)} characters cut) ...\n{tail}"


def execute(fn: str, config: dict[str, Any], allow: Allowlist) -> tuple[str, Any]:
    """Run one trial function: ``("completed", metric)`` or ``(failure kind, message)``.

    A path the allowlist refuses, or that does not load, gives ``("refused", reason)`` (for a
    refused path nothing is imported). Exceptions that stop the job (timeouts, imminent
    shutdown) propagate to the caller.
    """
    try:
        func = load_trial(fn, allow)
    except TrialLoadError as exc:
        return "refused", f"{exc} (worker allowlist: {allow or 'empty'}; set EVOQ_ALLOW or --allow)"
    try:
        result = func(config)
    except (BaseTimeoutException, ShutDownImminentException):
        raise
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}\n{_short_traceback(exc)}"
    try:
        return "completed", parse_metric(result)
    except InvalidMetricError as exc:
        return "invalid_metric", f"{fn} {exc}"


def dispatch(
    p: Payload,
    allow: Allowlist,
    progress: Callable[[int, float], None] | None,
    space: frozenset[str] | None = None,
) -> tuple[str, Any]:
    """Run the payload's trial, a function or a command: ``(kind, metric or message)``. With
    ``space`` (the names of the experiment's parameters), a command trial's config naming
    anything else is refused: the script would get it as one more ``--flag`` of its own (a
    function gets a config as data only)."""
    try:
        command = parse_trial(p.fn)
    except TrialSpecError as exc:
        return "refused", str(exc)
    if not isinstance(command, CommandTrial):
        return execute(p.fn, p.config, allow)
    why = allow.refusal(p.fn)
    if why is not None:
        return "refused", f"{why} (set EVOQ_ALLOW_COMMANDS or pass --allow-command)"
    extra = sorted(k for k in p.config if space is not None and k not in space)
    if extra:
        shown = ", ".join(repr(k)[:40] for k in extra[:5])
        return "refused", f"the config names parameters the experiment's space does not have ({shown})"
    return run_command(
        command, p.config, experiment=p.experiment, index=p.trial, attempt=p.attempt,
        on_intermediate=progress or (lambda step, value: None),
    )  # fmt: skip


def experiment_head(conn: redis.Redis, keys: Keys) -> tuple[int, frozenset[str]] | None:
    """The schema version of the experiment's creation record (the stream's first entry) and
    the names of its space's parameters, or None when the stream holds no readable
    ``experiment_created`` record."""
    first: Any = conn.xrange(keys.stream, count=1)
    if not first:
        return None
    data = first[0][1].get(STREAM_FIELD) if isinstance(first[0][1], dict) else None
    if not isinstance(data, bytes):
        return None
    try:
        rec = msgpack.unpackb(data, **MSGPACK_UNPACK)
    except Exception:  # a garbled first record: no experiment to report to
        return None
    if not (isinstance(rec, tuple) and len(rec) > 1 and rec[0] == TAGS[ExperimentCreated]):
        return None
    version = rec[1]
    space = rec[3] if len(rec) > 3 else None
    if type(version) is not int or version < 1 or not isinstance(space, dict):
        return None
    return min(version, SCHEMA_VERSION), frozenset(k for k in space if isinstance(k, str))


def run_trial(payload: Any) -> dict[str, Any]:
    """RQ job entry: run one trial run and append its events. Returns a small summary."""
    try:
        p = parse_payload(payload)
    except PayloadError as exc:
        raise ValueError(f"not an evoq trial payload: {exc}") from None
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_trial must run inside an RQ worker")
    if job.id != p.job_id:
        raise ValueError(f"job {job.id!r:.80} does not carry the run it names ({p.job_id})")
    conn: redis.Redis = job.connection
    keys = p.keys
    head = experiment_head(conn, keys)
    version, names = head if head is not None else (None, frozenset[str]())
    if version is None:
        raise ValueError(f"experiment {p.experiment!r} has no readable creation record in this Redis")
    worker = (job.worker_name or socket.gethostname())[:MAX_WORKER_NAME]
    log = RedisLog(conn, keys)
    trial, attempt = p.trial, p.attempt

    def report(event: Event) -> None:
        log.append([encode(event, version=version)])

    report(TrialStarted(trial, attempt, worker, time.time()))
    beat = Heartbeat(conn, keys.heartbeat(trial, attempt), p.heartbeat_ttl, worker).start()
    progress = Progress(lambda step, value: report(TrialProgressed(trial, attempt, step, value, time.time())))
    t0 = time.monotonic()
    try:
        kind, value = dispatch(p, allowlist(), progress if version >= 2 else None, names)
        progress.flush()
    except BaseTimeoutException as exc:
        report(TrialFailed(trial, attempt, "timeout", clip(f"{exc}"), worker, time.time()))
        raise
    except ShutDownImminentException as exc:
        message = clip(f"worker shutting down: {exc}")
        report(TrialFailed(trial, attempt, "preempted", message, worker, time.time()))
        raise
    finally:
        beat.stop()
    duration = time.monotonic() - t0
    if kind == "completed":
        report(TrialCompleted(trial, attempt, value, duration, worker, time.time()))
        return {"trial": trial, "attempt": attempt, "metric": value}
    message = clip(str(value))
    report(TrialFailed(trial, attempt, kind, message, worker, time.time()))
    line = next((ln for ln in message.splitlines() if ln.strip()), "")[:300]
    rq_log.warning(
        "evoq: trial %d attempt %d of %s failed (%s): %s", trial, attempt, p.experiment, kind, line
    )
    return {"trial": trial, "attempt": attempt, "failed": kind}
