"""A job class that runs nothing but evoq's trial entry, and uses no RQ feature evoq did not set.

``rq worker --job-class workers.job.EvoqJob`` makes a worker refuse, before anything is
imported, run or sent, any job that is not exactly what evoq's controller enqueues:

* the function must be :data:`ALLOWED_FUNCTIONS` (``workers.trial.run_trial``), with no
  instance, one positional argument — a payload :func:`workers.payload.parse_payload` accepts,
  whose run's job id is this job's id — and no keyword arguments;
* the job hash may hold only the fields RQ writes for such a job (:data:`HASH_FIELDS`); callback
  names and the group id must be empty; webhooks, callbacks, dependencies, retries, repeats,
  rate limits, a job TTL, ``at_front`` and meta are refused, as is any field RQ does not write;
* the job's origin must be one of the worker's queues (``EVOQ_QUEUES``, set by ``evoq worker``).

Whatever a refused job carries is also *neutralized* when it is loaded: webhooks, callbacks,
dependencies, retries and repeats are dropped, so the worker fails the job without sending a
request, enqueueing a dependent or retrying it. (A data-only serializer alone would not stop any
of this: RQ imports whatever function path a job names, and acts on the hash's fields.)
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

# Imported here, in `rq worker`'s main process (which loads this module as --job-class), so that a
# forking Worker's work horses inherit evoq instead of importing it again for every job (~18 ms of
# CPU per job measured by scripts/bench_system.py). The user's trial module is still imported only
# in the horse: nothing touches CUDA before the fork.
import workers.trial  # noqa: F401
from evoq.errors import EvoqError

from .payload import PayloadError, parse_payload

ALLOWED_FUNCTIONS = frozenset({"workers.trial.run_trial"})
QUEUES_VAR = "EVOQ_QUEUES"

HASH_FIELDS = frozenset({
    "status", "created_at", "data", "origin", "description", "enqueued_at", "timeout",
    "result_ttl", "failure_ttl", "started_at", "ended_at", "last_heartbeat", "worker_name",
    "exc_info", "result", "success_callback_name", "failure_callback_name",
    "stopped_callback_name", "group_id",
})  # fmt: skip
"""Fields of an evoq job's hash, as RQ writes them over the job's life."""
MUST_BE_EMPTY = ("success_callback_name", "failure_callback_name", "stopped_callback_name", "group_id")
MAX_HASH_FIELDS = 64
MAX_JOB_DATA = 1 << 20
"""Bytes a job's ``data`` may hold, before and after RQ decompresses it (evoq's payloads are a
few KiB): a larger one, or a zlib bomb, is refused unread."""
MAX_HASH_BYTES = 4 << 20
"""Bytes of the whole job hash (a failed job's traceback included)."""


class RefusedJobError(EvoqError):
    """The job is not one evoq's controller enqueued; this worker will not run it."""


def hash_refusal(fields: dict[str, Any], origin: str) -> str | None:
    """Why a job hash is not one evoq writes (None when it is)."""
    if len(fields) > MAX_HASH_FIELDS:
        return f"the job hash has {len(fields)} fields"
    unknown = sorted(k for k in fields if k not in HASH_FIELDS)
    if unknown:
        shown = ", ".join(repr(k)[:40] for k in unknown[:5])
        return f"the job carries RQ features evoq does not use ({shown})"
    filled = [k for k in MUST_BE_EMPTY if fields.get(k)]
    if filled:
        return f"the job carries RQ features evoq does not use ({', '.join(filled)})"
    queues = [q for q in os.environ.get(QUEUES_VAR, "").split(",") if q]
    if queues and origin not in queues:
        return f"the job's origin queue {origin!r:.60} is not one of this worker's queues {queues}"
    return None


def size_refusal(fields: dict[str, Any]) -> str | None:
    """Why a job hash is too large to read (None when it is not): its fields together, or its
    data or traceback, raw or once zlib-decompressed (decompressed no further than the limit)."""
    total = sum(len(k) + (len(v) if isinstance(v, bytes | str) else 0) for k, v in fields.items())
    if total > MAX_HASH_BYTES:
        return f"the job hash holds {total} bytes (at most {MAX_HASH_BYTES})"
    for name in ("data", "exc_info"):  # the fields RQ decompresses when it loads a job
        value = fields.get(name)
        if not isinstance(value, bytes):
            continue
        if len(value) > MAX_JOB_DATA:
            return f"the job's {name} holds {len(value)} bytes (at most {MAX_JOB_DATA})"
        if inflate_at_most(value, MAX_JOB_DATA) is None:
            return f"the job's {name} decompresses to more than {MAX_JOB_DATA} bytes"
    return None


def inflate_at_most(value: bytes, limit: int) -> bytes | None:
    """``value`` zlib-inflated, or None when it would inflate to more than ``limit`` bytes
    (inflated no further than that: a zlib bomb costs ``limit`` bytes); ``value`` itself when it
    is not zlib data (RQ then reads it as it is)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(value, limit + 1)
    except zlib.error:
        return value
    return None if len(out) > limit or inflater.unconsumed_tail else out


REFUSED_FUNCTION = "evoq.refused"
"""The function a quarantined job names (in no allowlist: it is never imported)."""


def _fields(raw_data: Any) -> dict[str, Any]:
    """A job hash's fields by name; names that are not UTF-8 decoded with replacement (RQ's
    own decoding raises on them, and is tried later, where its error quarantines the job)."""
    if not isinstance(raw_data, dict):
        return {}
    return {k.decode(errors="replace") if isinstance(k, bytes) else str(k): v for k, v in raw_data.items()}


def _quarantined(fields: dict[str, Any], serializer: Any) -> dict[bytes, bytes]:
    """What an unreadable job is restored from: data naming :data:`REFUSED_FUNCTION` with no
    arguments, and only the fields RQ needs to fail it, each one known to parse."""
    out = {b"data": serializer.dumps((REFUSED_FUNCTION, None, [], {}))}
    origin = fields.get("origin")
    if isinstance(origin, bytes) and len(origin) <= 200:
        out[b"origin"] = origin.decode(errors="replace").encode()
    status = fields.get("status")
    text = status.decode(errors="replace") if isinstance(status, bytes) else ""
    out[b"status"] = text.encode() if text in {s.value for s in JobStatus} else b"queued"
    return out


class EvoqJob(Job):
    """An RQ job restricted to evoq's trial entry, with no RQ feature evoq does not set."""

    _evoq_refusal: str | None = None

    def restore(self, raw_data: Any) -> Any:
        """Load the job hash, note why it must not run (if so), and drop every feature evoq does
        not use, whatever the hash said.

        A hash RQ cannot read (a field that does not parse, a data field too large or a zlib
        bomb) would stop the worker that dequeues it, and every worker after it: such a job is
        restored from :func:`_quarantined` fields instead, refused, and failed without running.
        """
        fields = _fields(raw_data)
        why = size_refusal(fields)
        result: Any = None
        if why is None:
            try:
                result = super().restore(raw_data)
            except NoSuchJobError:  # no data at all: RQ skips it as a job that is gone
                raise
            except Exception as exc:  # hostile values RQ's own parsing trips on
                why = f"RQ cannot read the job hash ({type(exc).__name__}: {str(exc)[:80]})"
        if why is not None:
            result = super().restore(_quarantined(fields, self.serializer))
        self._evoq_refusal = why or hash_refusal(fields, self.origin)
        if self._evoq_refusal is None and self._status == "canceled":
            self._evoq_refusal = "the job was cancelled (its experiment ended)"
        self.webhooks = []
        self._success_callback_name = self._failure_callback_name = self._stopped_callback_name = None
        self._dependency_ids = []
        self.allow_dependency_failures = None
        self.retries_left = None
        self.retry_intervals = None
        self.number_of_retries = None
        self.enqueue_at_front_on_retry = False
        self.repeats_left = None
        self.repeat_intervals = None
        self.rate_limit_key = None
        self.rate_limit_concurrency = None
        self.group_id = None
        return result

    def refresh(self) -> None:
        """Load the job hash; a key of another type where the hash should be (someone else's
        write) is no job: RQ skips it, as it skips a job that is gone.

        Raises:
            NoSuchJobError: no job hash under the job's key.
        """
        try:
            super().refresh()  # type: ignore[no-untyped-call]
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            raise NoSuchJobError(f"{self.key} is not a job hash") from None

    def refusal(self) -> str | None:
        """Why this job must not run, or None when it may."""
        if self._evoq_refusal is not None:
            return self._evoq_refusal
        try:
            name, instance, args, kwargs = self.func_name, self.instance, self.args, self.kwargs
        except Exception as exc:  # the serializer or RQ could not read the job's data
            return f"the job's data cannot be read ({type(exc).__name__})"
        if name not in ALLOWED_FUNCTIONS:
            return f"job function {name!r:.80} is not allowed (only {', '.join(sorted(ALLOWED_FUNCTIONS))})"
        if instance is not None:
            return "jobs calling a method of an instance are not allowed"
        if kwargs or not isinstance(args, list | tuple) or len(args) != 1:
            return "the job must have exactly one positional argument (evoq's payload)"
        try:
            payload = parse_payload(args[0])
        except PayloadError as exc:
            return str(exc)
        if payload.job_id != self.id:
            return f"job id {self.id!r:.80} is not the id of the run its payload names ({payload.job_id})"
        return None

    @property
    def func(self) -> Any:
        """The job's function, after the checks."""
        why = self.refusal()
        if why is not None:
            raise RefusedJobError(f"evoq worker refused job {self.id}: {why}")
        return super().func

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        """Never: evoq jobs have no webhooks."""

    # Callbacks never run, whatever the job says.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None
