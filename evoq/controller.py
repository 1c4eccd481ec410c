"""The controller: replay the stream, then block on it, fold, propose and submit.

Its state is never stored: it is rebuilt by replaying the experiment's Redis Stream and then
kept up to date by folding new entries as ``XREAD BLOCK`` delivers them (no fixed-interval
polling). Each decision is made on exactly the log prefix that precedes it: a submission is a
MULTI/EXEC that WATCHes the stream and the lease, checks that the stream's last entry is the last
one folded, and then appends the ``TrialSubmitted`` event *and* enqueues its RQ job. Any
concurrent append aborts it; the controller folds what arrived and decides again. So an
auditor replaying the log re-derives every decision, and a crash can never leave a logged trial
without its job or a job without its event.

Exactly one controller runs an experiment: it holds a lease key with a TTL, renewed as it goes,
whose value carries a fencing token; every write is conditional on the lease still being ours.

Lost runs are detected from the controller side: the RQ job hash is gone, or the job ended
(failed, finished, stopped) without the run's terminal event in the log, or the job is STARTED but
its heartbeat key — refreshed by the worker while the trial runs — has expired.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job
from rq.worker import Worker

from .codec import encode
from .events import Event, ExperimentCreated, ExperimentFinished, TrialFailed, TrialSubmitted
from .keys import DEFAULT_QUEUE, EXPERIMENTS, STREAM_FIELD, Keys
from .log import unpack_records
from .proposal import Proposal, may_submit, propose
from .redislog import RedisLog
from .reducer import Run, State, StateBuilder, finish_reason, status_of
from .space import SearchSpace
from .strategy import Strategy

log = logging.getLogger("evoq.controller")

TRIAL_ENTRY = "workers.trial.run_trial"
_ALIVE = {b"queued", b"deferred", b"scheduled"}


class ControllerError(RuntimeError):
    """The controller cannot go on; the message says why (no traceback needed)."""


class LeaseHeldError(ControllerError):
    """Another controller holds this experiment's lease."""


class LeaseLostError(ControllerError):
    """This controller's lease was taken over or expired; it must stop writing."""


class ExperimentMismatchError(ControllerError):
    """The stream holds an experiment of the same name with other parameters."""


@dataclass(frozen=True, kw_only=True)
class ControllerOptions:
    """How the controller runs (not part of the experiment's definition).

    Attributes:
        queue: the RQ queue trials go to (shared by experiments).
        lease_ttl: seconds the lease lives without renewal (renewed every third of it).
        heartbeat_ttl: seconds a running trial's heartbeat key lives without refresh: a worker
            silent for this long has its run declared lost.
        check_interval: seconds between checks of running jobs (also the XREAD BLOCK timeout).
        wait_for_lease: wait for another controller's lease instead of exiting.
        result_ttl: seconds RQ keeps a finished job's hash.
        capacity: a function giving the number of live workers (default: RQ workers of the queue
            whose Redis connection is up, from CLIENT LIST).
    """

    queue: str = DEFAULT_QUEUE
    lease_ttl: float = 10.0
    heartbeat_ttl: float = 10.0
    check_interval: float = 1.0
    wait_for_lease: bool = False
    result_ttl: int = 600
    capacity: Callable[[], int] | None = None


def experiment_matches(a: ExperimentCreated, b: ExperimentCreated) -> list[str]:
    """The fields in which two experiment definitions differ (empty when they agree)."""
    diffs = []
    if SearchSpace.parse(a.space) != SearchSpace.parse(b.space):
        diffs.append("space")
    if Strategy.from_dict(a.strategy) != Strategy.from_dict(b.strategy):
        sa, sb = Strategy.from_dict(a.strategy).to_dict(), Strategy.from_dict(b.strategy).to_dict()
        diffs.extend(f"strategy.{k} ({sa[k]!r} != {sb[k]!r})" for k in sa if sa[k] != sb[k])
    if a.seed != b.seed:
        diffs.append(f"seed ({a.seed} != {b.seed})")
    if a.trial != b.trial:
        diffs.append(f"trial ({a.trial!r} != {b.trial!r})")
    return diffs


class Controller:
    """Runs one experiment to its end against a Redis and an RQ queue."""

    def __init__(
        self,
        client: redis.Redis,
        experiment: ExperimentCreated,
        options: ControllerOptions | None = None,
        *,
        on_progress: Callable[[StateBuilder], None] | None = None,
        on_entries: Callable[[list[tuple[str, bytes]]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.experiment = experiment
        self.opts = options or ControllerOptions()
        self.keys = Keys(experiment.name)
        self.log = RedisLog(client, self.keys)
        self.queue = Queue(
            self.opts.queue,
            connection=client,
            serializer="workers.serializer.MsgpackSerializer",
            job_class="workers.job.EvoqJob",
        )
        self.on_progress = on_progress
        self.on_entries = on_entries
        self._handed = 0
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_value: bytes | None = None
        self.state = StateBuilder()
        self.last_id: str | None = None
        self._renewed = 0.0
        self._checked = 0.0
        self._missing: dict[tuple[int, int], float] = {}
        self._workers_cache: tuple[float, int] = (0.0, 0)
        self.stop_event = threading.Event()

    # -- lease --------------------------------------------------------------------------------
    _RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
    _READ_TAIL = "return {redis.call('get', KEYS[1]), redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', 1)}"
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def acquire(self) -> None:
        """Take the lease (or wait for it with ``wait_for_lease``)."""
        ttl_ms = int(self.opts.lease_ttl * 1000)
        announced = False
        while True:
            fence = int(self.client.incr(self.keys.fence))
            value = f"{fence}:{self.owner}".encode()
            if self.client.set(self.keys.lease, value, nx=True, px=ttl_ms):
                self.lease_value = value
                self._renewed = time.monotonic()
                return
            holder = self.client.get(self.keys.lease)
            who = holder.decode(errors="replace") if isinstance(holder, bytes) else "?"
            if not self.opts.wait_for_lease:
                raise LeaseHeldError(
                    f"experiment {self.experiment.name!r} is already run by another controller "
                    f"(lease {who}); stop it first, or pass --wait to take over when it stops"
                )
            if not announced:
                log.warning("waiting for controller %s to release experiment %r", who, self.experiment.name)
                announced = True
            if self.stop_event.wait(min(1.0, self.opts.lease_ttl / 3)):
                raise ControllerError("stopped while waiting for the lease")

    def renew(self, force: bool = False) -> None:
        """Renew the lease if a third of its TTL has passed; raise LeaseLostError if it is gone."""
        now = time.monotonic()
        if not force and now - self._renewed < self.opts.lease_ttl / 3:
            return
        ok = self.client.eval(
            self._RENEW, 1, self.keys.lease, self.lease_value or b"", int(self.opts.lease_ttl * 1000)
        )
        if not ok:
            raise LeaseLostError(
                f"lost the lease on experiment {self.experiment.name!r} (another controller took over, "
                "or this one stalled longer than the lease TTL)"
            )
        self._renewed = now

    def release(self) -> None:
        """Give the lease back (only if it is still ours)."""
        if self.lease_value is not None:
            with contextlib.suppress(redis.RedisError):
                self.client.eval(self._RELEASE, 1, self.keys.lease, self.lease_value)
            self.lease_value = None

    # -- log ----------------------------------------------------------------------------------
    def replay(self) -> None:
        """Rebuild the state from the whole stream."""
        self.state = StateBuilder()
        self.last_id = None
        self.catch_up()

    def catch_up(self) -> int:
        """Fold every entry after the last one folded; return how many."""
        before = self.state.events
        self._fold(list(self.log.read(self.last_id)))
        return self.state.events - before

    def _fold(self, entries: list[tuple[str, bytes]]) -> None:
        if entries:
            before = self.state.events
            self.state.add_records(unpack_records(entries))
            self.last_id = entries[-1][0]
            if self.on_entries is not None:
                # hand each log entry over once, even when a reconnect replays the stream
                fresh = entries[max(0, self._handed - before) :]
                self._handed = max(self._handed, before + len(entries))
                if fresh:
                    self.on_entries(fresh)

    def _append(self, event: Event, job: Proposal | None = None) -> bool:
        """Append ``event`` (and enqueue the job of ``job``) iff the lease is ours and nothing was
        appended since the last entry folded. Returns False when something was: catch up and
        decide again."""
        record = encode(event)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.lease, self.keys.stream)  # type: ignore[no-untyped-call]
                # the lease and the stream's last id in one round trip (both keys share a slot)
                lease, tail = pipe.eval(self._READ_TAIL, 2, self.keys.lease, self.keys.stream)
                if lease != self.lease_value:
                    raise LeaseLostError(f"lost the lease on experiment {self.experiment.name!r}")
                tail_id = (
                    (tail[0][0].decode() if isinstance(tail[0][0], bytes) else tail[0][0]) if tail else None
                )
                if tail_id != self.last_id:
                    return False
                pipe.multi()
                pipe.xadd(self.keys.stream, {STREAM_FIELD: record})
                if job is not None:
                    self._enqueue(job, pipe)
                result = pipe.execute()
            except WatchError:
                return False
        raw_id = result[0]
        self._fold([(raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id), record)])
        return True

    def _enqueue(self, p: Proposal, pipe: Any) -> None:
        from workers.trial import make_payload

        st = self.state.strategy
        assert st is not None
        timeout = int(st.trial_timeout) if st.trial_timeout else -1
        payload = make_payload(
            self.experiment.name, p.trial, p.attempt, p.config, self.experiment.trial, self.opts.heartbeat_ttl
        )
        self.queue.enqueue_call(
            TRIAL_ENTRY,
            args=(payload,),
            job_id=self.keys.job_id(p.trial, p.attempt),
            timeout=timeout,
            result_ttl=self.opts.result_ttl,
            description=f"evoq {self.experiment.name} trial {p.trial} attempt {p.attempt}",
            pipeline=pipe,
        )

    def _created(self) -> ExperimentCreated | None:
        return self.state.experiment

    def _finished(self) -> ExperimentFinished | None:
        return self.state.finished

    # -- setup --------------------------------------------------------------------------------
    def open(self) -> None:
        """Take the lease, create or check the experiment, and replay its stream."""
        self.acquire()
        self.replay()
        if self.state.experiment is None:
            created = ExperimentCreated(
                self.experiment.name,
                self.experiment.space,
                self.experiment.strategy,
                self.experiment.seed,
                self.experiment.trial,
                self.experiment.evoq_version,
                self.clock(),
            )
            while not self._append(created):
                self.catch_up()
                if self._created() is not None:
                    break
        exp = self._created()
        assert exp is not None
        diffs = experiment_matches(exp, self.experiment)
        if diffs:
            self.release()
            raise ExperimentMismatchError(
                f"experiment {exp.name!r} already exists in this Redis with other parameters: "
                f"{', '.join(diffs)}; choose another name or delete it"
            )
        self.client.sadd(EXPERIMENTS, exp.name)

    # -- workers and lost runs ----------------------------------------------------------------
    def live_workers(self) -> int:
        """RQ workers listening on the queue whose Redis connection is up (cached for 1 s)."""
        if self.opts.capacity is not None:
            return self.opts.capacity()
        now = time.monotonic()
        if now - self._workers_cache[0] < 1.0:
            return self._workers_cache[1]
        names = {k.split(":", 2)[-1] for k in Worker.all_keys(connection=self.client, queue=self.queue)}
        try:
            clients: Any = self.client.client_list()
            connected = {c.get("name") for c in clients}
            count = len(names & connected)
        except redis.ResponseError:  # managed Redis may forbid CLIENT LIST
            count = len(names)
        # Never 0: an under-count (a worker whose connection was re-opened without its name is
        # invisible to CLIENT LIST) must not stall the evolve phase; an over-count only leaves a
        # job waiting in the queue.
        count = max(count, 1)
        self._workers_cache = (now, count)
        return count

    def check_runs(self) -> None:
        """Declare lost the runs whose job vanished, ended unreported, or stopped heartbeating."""
        runs = list(self.state.running.values())
        if not runs:
            self._missing.clear()
            return
        # one MULTI/EXEC: a consistent snapshot of each job's status, queue position and heartbeat
        pipe = self.client.pipeline(transaction=True)
        for r in runs:
            job_id = self.keys.job_id(r.trial, r.attempt)
            pipe.hget(Job.key_for(job_id), "status")
            pipe.exists(self.keys.heartbeat(r.trial, r.attempt))
            pipe.lpos(self.queue.key, job_id)
            pipe.lpos(self.queue.intermediate_queue_key, job_id)
        answers = pipe.execute()
        self.catch_up()  # statuses first, then the log: an event written before its job ended is seen
        now = time.monotonic()
        alive: set[tuple[int, int]] = set()
        for i, r in enumerate(runs):
            status, beating, in_queue, picked = answers[4 * i : 4 * i + 4]
            if status == b"queued" and in_queue is None:
                status = b"picked" if picked is not None else b"unqueued"
            current = self.state.running.get(r.trial)
            if current is None or current.attempt != r.attempt:
                continue
            key = (r.trial, r.attempt)
            reason = self._lost_reason(r, status, bool(beating), now)
            if reason is None:
                alive.add(key)
                continue
            self.declare_lost(r, reason)
        self._missing = {k: v for k, v in self._missing.items() if k in alive}

    def _lost_reason(self, r: Run, status: bytes | None, beating: bool, now: float) -> str | None:
        job_id = self.keys.job_id(r.trial, r.attempt)
        if status is None:
            return f"RQ job {job_id} is gone"
        if status in _ALIVE:
            self._missing.pop((r.trial, r.attempt), None)
            return None
        if status == b"unqueued":
            return f"RQ job {job_id} is queued but in no queue (its queue was lost)"
        if status == b"picked":
            since = self._missing.setdefault((r.trial, r.attempt), now)
            if now - since < self.opts.heartbeat_ttl:
                return None  # a worker took it and is about to start it
            return f"RQ job {job_id} was taken by a worker that never started it"
        if status == b"started":
            if beating:
                self._missing.pop((r.trial, r.attempt), None)
                return None
            since = self._missing.setdefault((r.trial, r.attempt), now)
            if now - since < min(2.0, self.opts.heartbeat_ttl):
                return None  # just started: the first beat may still be on its way
            return f"worker {r.worker or '?'} stopped heartbeating (no beat for {self.opts.heartbeat_ttl:g}s)"
        detail = ""
        if status == b"failed":
            detail = self._failure_detail(job_id)
        return f"RQ job {job_id} ended {status.decode(errors='replace')} without reporting" + detail

    def _failure_detail(self, job_id: str) -> str:
        try:
            job = Job.fetch(job_id, connection=self.client, serializer="workers.serializer.MsgpackSerializer")
            result = job.latest_result()
            text = (result.exc_string or "") if result is not None else ""
        except Exception:  # the detail is a courtesy; never let it stop the controller
            return ""
        last = [line for line in text.strip().splitlines() if line.strip()]
        return f": {last[-1].strip()[:300]}" if last else ""

    def declare_lost(self, r: Run, reason: str) -> None:
        """Append ``TrialFailed(kind="lost")`` for a run (if it is still running)."""
        event = TrialFailed(r.trial, r.attempt, "lost", reason, r.worker or "", self.clock())
        while True:
            current = self.state.running.get(r.trial)
            if current is None or current.attempt != r.attempt:
                return
            if self._append(event):
                log.warning("trial %d attempt %d lost: %s", r.trial, r.attempt, reason)
                self._missing.pop((r.trial, r.attempt), None)
                return
            self.catch_up()

    # -- the loop -----------------------------------------------------------------------------
    def submit_ready(self) -> int:
        """Submit proposals while there is capacity; return how many were submitted."""
        n = 0
        while not self.stop_event.is_set():
            st = self.state.strategy
            assert st is not None
            if not may_submit(self.state, self.live_workers() + st.prefetch):
                return n
            p = propose(self.state)
            if p is None:
                return n
            event = TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, self.clock())
            if self._append(event, p):
                n += 1
            else:
                self.catch_up()
        return n

    def finish_if_due(self) -> bool:
        """Append ``ExperimentFinished`` when the state says the experiment is over."""
        b = self.state
        if b.finished is not None:
            return True
        status = status_of(b)
        if status not in ("completed", "failed"):
            return False
        while self._finished() is None:
            if not self._append(ExperimentFinished(status, finish_reason(b), self.clock())):
                self.catch_up()
        return True

    def step(self) -> bool:
        """One round: renew, check runs, submit, then block for new events. True when finished."""
        self.renew()
        now = time.monotonic()
        if now - self._checked >= self.opts.check_interval:
            self.check_runs()
            self._checked = now
        if self.finish_if_due():
            return True
        self.submit_ready()
        if self.finish_if_due():
            return True
        self.await_events()
        if self.on_progress is not None:
            self.on_progress(self.state)
        return False

    def await_events(self) -> None:
        """Block on the stream (XREAD BLOCK) until new entries or the check interval; fold them."""
        timeout = min(self.opts.check_interval, self.opts.lease_ttl / 3)
        self._fold(self.log.wait(self.last_id, int(timeout * 1000)))

    def run(self) -> State:
        """Run the experiment until it finishes or :meth:`stop` is called; return the state."""
        backoff = 0.1
        opened = broken = False
        try:
            while not self.stop_event.is_set():
                try:
                    if not opened:
                        self.open()
                        opened = True
                        if self.on_progress is not None:
                            self.on_progress(self.state)
                    elif broken:
                        self._recover()
                        broken = False
                    if self.step():
                        break
                    backoff = 0.1
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("Redis unreachable (%s); retrying in %.1fs", exc, backoff)
                    broken = True
                    if self.stop_event.wait(backoff):
                        break
                    backoff = min(backoff * 2, 5.0)
        finally:
            self.release()
        return self.state.freeze()

    def _recover(self) -> None:
        """After Redis came back: make sure the lease is still ours, then replay from scratch
        (a restarted Redis may have lost its last second of writes)."""
        self.client.ping()
        holder = self.client.get(self.keys.lease)
        if holder is None:
            ok = self.client.set(
                self.keys.lease, self.lease_value or b"", nx=True, px=int(self.opts.lease_ttl * 1000)
            )
            if not ok:
                raise LeaseLostError(
                    f"lost the lease on experiment {self.experiment.name!r} while Redis was away"
                )
        elif holder != self.lease_value:
            raise LeaseLostError(
                f"lost the lease on experiment {self.experiment.name!r} while Redis was away"
            )
        self.renew(force=True)
        self.replay()
        log.info("Redis is back; replayed %d events", self.state.events)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step (thread- and signal-safe)."""
        self.stop_event.set()
