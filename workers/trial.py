"""The job entry that runs one trial inside ``rq worker`` and reports its outcome itself.

RQ callbacks are not a reliable way to learn that a trial ended (they do not run when a work
horse is killed), so this function appends ``TrialStarted`` and then exactly one of
``TrialCompleted`` / ``TrialFailed`` to the experiment's stream. While the trial runs, a thread
keeps the run's heartbeat key alive with a TTL; the controller declares the run lost when the
key expires.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import redis
from rq import get_current_job
from rq.exceptions import ShutDownImminentException
from rq.timeouts import BaseTimeoutException

from evoq.codec import encode
from evoq.events import Event, TrialCompleted, TrialFailed, TrialStarted
from evoq.keys import Keys
from evoq.loader import TrialLoadError, allowed, load_trial
from evoq.metric import InvalidMetricError, parse_metric
from evoq.redislog import RedisLog

from .settings import allow_patterns, heartbeat_interval

PAYLOAD_VERSION = 1
_TRACEBACK_LINES = 12


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


def make_payload(
    experiment: str, trial: int, attempt: int, config: Mapping[str, Any], fn: str, heartbeat_ttl: float
) -> dict[str, Any]:
    """The job argument for :func:`run_trial` (plain data: msgpack-serializable)."""
    return {
        "v": PAYLOAD_VERSION,
        "experiment": experiment,
        "trial": trial,
        "attempt": attempt,
        "config": dict(config),
        "fn": fn,
        "heartbeat_ttl": heartbeat_ttl,
    }


def _short_traceback(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-_TRACEBACK_LINES:])


def execute(fn: str, config: dict[str, Any], patterns: tuple[str, ...]) -> tuple[str, Any]:
    """Run one trial function: ``("completed", metric)`` or ``(failure kind, message)``.

    Exceptions that stop the job (timeouts, imminent shutdown) propagate to the caller.
    """
    if not allowed(fn, patterns):
        return "error", (
            f"trial function {fn!r} is not in this worker's allowlist {list(patterns)} "
            "(set EVOQ_ALLOW or pass --allow to evoq worker)"
        )
    try:
        func = load_trial(fn)
    except TrialLoadError as exc:
        return "error", str(exc)
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


def run_trial(payload: dict[str, Any]) -> dict[str, Any]:
    """RQ job entry: run one trial run and append its events. Returns a small summary."""
    if not isinstance(payload, dict) or payload.get("v") != PAYLOAD_VERSION:
        raise ValueError(f"not an evoq trial payload of version {PAYLOAD_VERSION}")
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_trial must run inside an RQ worker")
    conn: redis.Redis = job.connection
    keys = Keys(str(payload["experiment"]))
    trial, attempt = int(payload["trial"]), int(payload["attempt"])
    fn, config = str(payload["fn"]), dict(payload["config"])
    worker = job.worker_name or socket.gethostname()
    log = RedisLog(conn, keys)

    def report(event: Event) -> None:
        log.append([encode(event)])

    report(TrialStarted(trial, attempt, worker, time.time()))
    beat = Heartbeat(conn, keys.heartbeat(trial, attempt), float(payload["heartbeat_ttl"]), worker).start()
    t0 = time.monotonic()
    try:
        kind, value = execute(fn, config, allow_patterns())
    except BaseTimeoutException as exc:
        report(TrialFailed(trial, attempt, "timeout", f"{exc}", worker, time.time()))
        raise
    except ShutDownImminentException as exc:
        report(TrialFailed(trial, attempt, "preempted", f"worker shutting down: {exc}", worker, time.time()))
        raise
    finally:
        beat.stop()
    duration = time.monotonic() - t0
    if kind == "completed":
        report(TrialCompleted(trial, attempt, value, duration, worker, time.time()))
        return {"trial": trial, "attempt": attempt, "metric": value}
    report(TrialFailed(trial, attempt, kind, value, worker, time.time()))
    return {"trial": trial, "attempt": attempt, "failed": kind}
